//! Token layout, MAC verification, forgery resistance and token life.

use super::*;
use crate::clock::ManualClock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> TokenRng {
    Box::new(StdRng::seed_from_u64(seed))
}

const MANAGER: [u8; 16] = [7; 16];
const NAA: [u8; 16] = [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fn spec(rod_type: u32) -> TokenSpec {
    TokenSpec {
        rod_type,
        creator: CreatorInfo { naa: NAA, block_size: 4096, lbppbe: 0, lbpme: true, lbprz: true, generation: 3 },
        target_name: "iqn.2026-01.dev.oxcopy:disk0".into(),
        bytes: 1 << 30,
        inactivity_timeout: Duration::from_secs(60),
        owner: "iqn.2026-01.dev.test:host1".into(),
        locator: None,
    }
}

fn store(clock: Arc<ManualClock>) -> TokenStore<u32> {
    TokenStore::new(CopyDomainKey::from_bytes([42; KEY_LEN]), MANAGER, clock, rng(1), TokenLimits::default())
}

#[test]
fn layout_follows_spc4() {
    let s = store(Arc::new(ManualClock::new()));
    let t = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 1).expect("issue");
    assert_eq!(&t[0..4], &[0x00, 0x80, 0x00, 0x00]);
    assert_eq!(&t[4..6], &[0, 0]);
    assert_eq!(&t[6..8], &[0x01, 0xF8]);
    assert_eq!(t[16], 0xE4);
    assert_eq!(&t[20..24], &[0x01, 0x03, 0x00, 0x10]);
    assert_eq!(&t[24..40], &NAA);
    assert_eq!(&t[45..48], &[0x00, 0x10, 0x00]);
    assert_eq!(u128::from_be_bytes(t[48..64].try_into().unwrap()), 1 << 30);
    assert_eq!(&t[64..96], &[0u8; 32]);
    assert_eq!(&t[96..100], &4096u32.to_be_bytes());
    assert_eq!(t[102] & 0xC0, 0xC0);
    // SCSI name string designator of the target device.
    assert_eq!(t[128], 0x03);
    assert_eq!(t[129], 0x28);
    let len = usize::from(t[131]);
    assert_eq!(len % 4, 0);
    let name = &t[132..132 + len];
    assert!(name.starts_with(b"iqn.2026-01.dev.oxcopy:disk0\0"));
    let h = s.verify(&t[..]).expect("verify");
    assert_eq!(h.rod_type, RodType::POINT_IN_TIME_DEFAULT);
    assert_eq!(h.creator_naa, NAA);
    assert_eq!(h.block_size, 4096);
    assert_eq!(h.bytes, 1 << 30);
    assert_eq!(h.generation, 3);
    assert_eq!(h.locator, None);
}

#[test]
fn a_shared_storage_locator_travels_in_bytes_64_to_96_under_the_mac() {
    let s = store(Arc::new(ManualClock::new()));
    let mut sp = spec(RodType::POINT_IN_TIME_DEFAULT);
    let loc: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    sp.locator = Some(loc);
    let mut t = s.issue(&sp, 1).expect("issue");
    assert_eq!(&t[64..96], &loc);
    assert_eq!(s.verify(&t[..]).expect("verify").locator, Some(loc));
    // Authenticated: changing the locator breaks the MAC.
    t[70] ^= 1;
    assert!(s.verify(&t[..]).is_err());
}

#[test]
fn two_tokens_differ_and_ids_are_unique() {
    let s = store(Arc::new(ManualClock::new()));
    let a = s.issue(&spec(RodType::ACCESS_UPON_REFERENCE), 1).expect("issue");
    let b = s.issue(&spec(RodType::ACCESS_UPON_REFERENCE), 2).expect("issue");
    assert_ne!(a[8..16], b[8..16]);
    assert_ne!(a[448..480], b[448..480]);
    assert_eq!(**s.acquire(&a[..]).expect("a").payload(), 1);
    assert_eq!(**s.acquire(&b[..]).expect("b").payload(), 2);
}

#[test]
fn long_target_names_are_truncated_inside_the_designator_area() {
    let mut sp = spec(RodType::POINT_IN_TIME_DEFAULT);
    sp.target_name = "x".repeat(1000);
    let s = store(Arc::new(ManualClock::new()));
    let t = s.issue(&sp, 0).expect("issue");
    assert!(132 + usize::from(t[131]) <= 416);
    s.acquire(&t[..]).expect("usable");
}

#[test]
fn forgery_bit_flips_and_random_tokens_are_refused() {
    let s = store(Arc::new(ManualClock::new()));
    let good = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 9).expect("issue");
    let mut rng = StdRng::seed_from_u64(6);
    for _ in 0..100_000 {
        let mut t = *good;
        let flips = rng.gen_range(1..=8);
        for _ in 0..flips {
            let bit: usize = rng.gen_range(0..TOKEN_LEN * 8);
            t[bit / 8] ^= 1 << (bit % 8);
        }
        if t == *good {
            continue; // the flips cancelled out
        }
        let e = s.acquire(&t[..]).err().expect("forged token accepted");
        assert!(matches!(e, TokenError::Corrupt | TokenError::Unknown), "{e:?}");
    }
    for _ in 0..100_000 {
        let mut t = [0u8; TOKEN_LEN];
        rng.fill_bytes(&mut t);
        // Keep the header plausible half the time so the MAC is what refuses it.
        if rng.gen() {
            t[..16].copy_from_slice(&good[..16]);
        }
        let e = s.acquire(&t[..]).err().expect("random token accepted");
        assert!(matches!(e, TokenError::Corrupt | TokenError::Unknown), "{e:?}");
    }
    assert_eq!(**s.acquire(&good[..]).expect("valid token still works").payload(), 9);
}

#[test]
fn another_key_or_manager_is_refused() {
    let clock = Arc::new(ManualClock::new());
    let s = store(clock.clone());
    let other_key = TokenStore::<u32>::new(
        CopyDomainKey::from_bytes([1; KEY_LEN]),
        MANAGER,
        clock.clone(),
        rng(2),
        TokenLimits::default(),
    );
    let t = other_key.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 0).expect("issue");
    assert_eq!(s.acquire(&t[..]).err(), Some(TokenError::Corrupt));
    // Same domain key, another copy manager: remote.
    let peer = TokenStore::<u32>::new(
        CopyDomainKey::from_bytes([42; KEY_LEN]),
        [8; 16],
        clock,
        rng(3),
        TokenLimits::default(),
    );
    let t = peer.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 0).expect("issue");
    let e = s.acquire(&t[..]).err().expect("remote");
    assert_eq!(e, TokenError::Remote);
}

#[test]
fn authentic_token_of_a_previous_run_is_unknown() {
    let clock = Arc::new(ManualClock::new());
    let before = store(clock.clone());
    let t = before.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 0).expect("issue");
    let after = store(clock);
    assert_eq!(after.acquire(&t[..]).err(), Some(TokenError::Unknown));
}

#[test]
fn wrong_length_is_invalid_token_length() {
    let s = store(Arc::new(ManualClock::new()));
    let e = s.acquire(&[0u8; 511]).err().expect("short");
    assert_eq!(e, TokenError::InvalidLength);
}

#[test]
fn expiry_deletion_revocation_and_their_sense() {
    let clock = Arc::new(ManualClock::new());
    let s = store(clock.clone());
    let a = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 1).expect("issue");
    let b = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 2).expect("issue");
    let c = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 3).expect("issue");
    assert_eq!(s.live(), 3);

    // A token in use does not expire mid-copy.
    let held = s.acquire(&a[..]).expect("a");
    clock.advance(Duration::from_secs(120));
    assert_eq!(s.reap(), 2, "b and c expired, a is held");
    assert_eq!(s.acquire(&b[..]).err(), Some(TokenError::Expired));
    assert!(s.acquire(&c[..]).is_err());
    drop(held);
    // Releasing restarts the inactivity timer.
    clock.advance(Duration::from_secs(59));
    let ha = s.acquire(&a[..]).expect("a still live");
    let id = ha.header().id;
    drop(ha);
    assert!(s.delete(id));
    let e = s.acquire(&a[..]).err().expect("deleted");
    assert_eq!(e, TokenError::Deleted);

    let d = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 4).expect("issue");
    assert_eq!(s.revoke_creator(&NAA), 1);
    let e = s.acquire(&d[..]).err().expect("revoked");
    assert_eq!(e, TokenError::Revoked);
    assert_eq!(s.live(), 0);
}

#[test]
fn expiry_happens_lazily_on_access() {
    let clock = Arc::new(ManualClock::new());
    let s = store(clock.clone());
    let a = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 1).expect("issue");
    clock.advance(Duration::from_secs(60));
    assert_eq!(s.acquire(&a[..]).err(), Some(TokenError::Expired));
}

#[test]
fn live_token_limit_gives_insufficient_resources() {
    let s = TokenStore::<u32>::new(
        CopyDomainKey::random(&mut StdRng::seed_from_u64(4)),
        MANAGER,
        Arc::new(ManualClock::new()),
        rng(5),
        TokenLimits { max_live: 2, max_per_owner: 2, max_tombstones: 1 },
    );
    s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 0).expect("1");
    let t = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 0).expect("2");
    let e = s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 0).expect_err("3");
    assert_eq!(e, TokenError::TooMany);
    let id = s.verify(&t[..]).expect("verify").id;
    assert!(s.delete(id));
    s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), 0).expect("room again");
}

/// One initiator holding its share of live tokens does not stop another.
#[test]
fn one_initiator_cannot_take_every_token() {
    let s = TokenStore::<u32>::new(
        CopyDomainKey::random(&mut StdRng::seed_from_u64(4)),
        MANAGER,
        Arc::new(ManualClock::new()),
        rng(5),
        TokenLimits { max_live: 4, max_per_owner: 2, max_tombstones: 4 },
    );
    let greedy = spec(RodType::POINT_IN_TIME_DEFAULT);
    let mut other = spec(RodType::POINT_IN_TIME_DEFAULT);
    other.owner = "iqn.2026-01.dev.test:host2".into();
    let t = s.issue(&greedy, 0).expect("1");
    s.issue(&greedy, 0).expect("2");
    assert_eq!(s.issue(&greedy, 0).err(), Some(TokenError::InitiatorShare));
    s.issue(&other, 0).expect("another initiator still gets tokens");
    s.issue(&other, 0).expect("up to its own share");
    assert_eq!(s.issue(&other, 0).err(), Some(TokenError::TooMany), "then the daemon-wide bound");
    // A token that goes gives its owner room again.
    let id = s.verify(&t[..]).expect("verify").id;
    assert!(s.delete(id));
    s.issue(&greedy, 0).expect("room again");
}

#[test]
fn tombstones_are_bounded() {
    let clock = Arc::new(ManualClock::new());
    let s = TokenStore::<u32>::new(
        CopyDomainKey::random(&mut StdRng::seed_from_u64(7)),
        MANAGER,
        clock,
        rng(8),
        TokenLimits { max_live: 16, max_per_owner: 16, max_tombstones: 2 },
    );
    let toks: Vec<_> = (0..4).map(|i| s.issue(&spec(RodType::POINT_IN_TIME_DEFAULT), i).expect("issue")).collect();
    for t in &toks {
        let id = s.verify(&t[..]).expect("v").id;
        s.delete(id);
    }
    assert_eq!(s.acquire(&toks[0][..]).err(), Some(TokenError::Unknown));
    assert_eq!(s.acquire(&toks[3][..]).err(), Some(TokenError::Deleted));
}

#[test]
fn zero_token_is_well_known() {
    let z = zero_token();
    assert!(is_zero_token(&z));
    assert_eq!(&z[6..8], &[0x01, 0xF8]);
    assert!(z[8..].iter().all(|&b| b == 0));
    let s = store(Arc::new(ManualClock::new()));
    assert_eq!(s.issue(&spec(RodType::BLOCK_DEVICE_ZERO), 0).err(), Some(TokenError::UnsupportedType));
    // Not one of ours: the store refuses it (WRITE USING TOKEN recognises it before the store).
    assert_eq!(s.acquire(&z[..]).err(), Some(TokenError::Corrupt));
}

#[test]
fn key_debug_is_redacted() {
    assert_eq!(format!("{:?}", CopyDomainKey::from_bytes([9; KEY_LEN])), "CopyDomainKey(..)");
}
