//! ROD token verification: `TokenStore::verify`, `locate` and `acquire`
//! on arbitrary bytes, under a fixed copy-domain key, against a store with
//! a few live tokens. Input: one mode byte, then the token.
//!
//! - mode bit 0: re-sign the (zero-padded) token with the domain key, so
//!   that the parsing after the MAC check is reached with arbitrary fields;
//! - mode bit 1: with bit 0, first put a live token's identifier in it
//!   (bits 4..7 pick which), reaching the live-table comparison;
//! - mode bit 2: advance the store's clock by the next byte (seconds; at
//!   most 2^19 s in all, so the live tokens never expire).
//!
//! Properties: nothing panics; a token verifies only with a valid MAC under
//! the domain key; a verified header's fields are the token's bytes;
//! acquiring never succeeds for a token that differs from every live one.
#![no_main]
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use oxcopy_copy::token::{
    CopyDomainKey, CreatorInfo, RodType, TokenLimits, TokenSpec, TokenStore, KEY_LEN, TOKEN_LEN,
};
use oxcopy_copy::{Clock, ManualClock};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const KEY: [u8; KEY_LEN] = [42; KEY_LEN];
/// Offsets of the token layout (crates/copy/src/token.rs `off`).
const ID_AT: usize = 8;
const MAC_AT: usize = 480;

struct Fixture {
    store: TokenStore<u32>,
    clock: Arc<ManualClock>,
    live: Vec<Box<[u8; TOKEN_LEN]>>,
    /// Seconds the clock has been advanced.
    advanced: AtomicU64,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let clock = Arc::new(ManualClock::new());
        let store = TokenStore::new(
            CopyDomainKey::from_bytes(KEY),
            [7; 16],
            clock.clone() as Arc<dyn Clock>,
            Box::new(StdRng::seed_from_u64(7)),
            TokenLimits { max_live: 16, max_per_owner: 16, max_tombstones: 16 },
        );
        let live = [RodType::POINT_IN_TIME_DEFAULT, RodType::ACCESS_UPON_REFERENCE, RodType::POINT_IN_TIME_PERSISTENT]
            .iter()
            .enumerate()
            .map(|(i, &rod_type)| {
                let spec = TokenSpec {
                    rod_type,
                    creator: CreatorInfo {
                        naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, i as u8],
                        block_size: if i == 1 { 4096 } else { 512 },
                        lbppbe: 0,
                        lbpme: true,
                        lbprz: true,
                        generation: 3,
                    },
                    target_name: "iqn.2026-11.dev.oxcopy:fuzz".into(),
                    bytes: 1 << 30,
                    // Long enough that the clock (advanced by at most 255 s per
                    // input) takes a while to expire them; expiry is exercised too.
                    inactivity_timeout: Duration::from_secs(1 << 20),
                    owner: "iqn.2026-11.dev.oxcopy:fuzzer".into(),
                    // One token with a shared-storage locator (bytes 64..96).
                    locator: (i == 1).then_some([0x52; 32]),
                };
                store.issue(&spec, i as u32).expect("issue")
            })
            .collect();
        Fixture { store, clock, live, advanced: AtomicU64::new(0) }
    })
}

fn sign(t: &mut [u8; TOKEN_LEN]) {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&KEY).expect("any key length");
    m.update(&t[..MAC_AT]);
    t[MAC_AT..].copy_from_slice(&m.finalize().into_bytes());
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut rest = rest;
    if mode & 4 != 0 {
        if let Some((&secs, r)) = rest.split_first() {
            // Bounded in total, so that the live tokens (inactivity timeout
            // 2^20 s) outlive any run and the live-table paths stay reachable.
            if f.advanced.fetch_add(u64::from(secs), Ordering::Relaxed) < 1 << 19 {
                f.clock.advance(Duration::from_secs(u64::from(secs)));
            }
            rest = r;
        }
    }
    let owned: Vec<u8>;
    let token: &[u8] = if mode & 1 != 0 {
        let mut t = [0u8; TOKEN_LEN];
        let n = rest.len().min(TOKEN_LEN);
        t[..n].copy_from_slice(&rest[..n]);
        if mode & 2 != 0 {
            let src = &f.live[usize::from(mode >> 4) % f.live.len()];
            t[ID_AT..ID_AT + 8].copy_from_slice(&src[ID_AT..ID_AT + 8]);
        }
        sign(&mut t);
        owned = t.to_vec();
        &owned
    } else {
        rest
    };
    let issued = f.live.iter().any(|l| l[..] == *token);
    match f.store.verify(token) {
        Ok(h) => {
            assert_eq!(token.len(), TOKEN_LEN);
            let mut resigned = [0u8; TOKEN_LEN];
            resigned.copy_from_slice(token);
            sign(&mut resigned);
            assert!(resigned[MAC_AT..] == token[MAC_AT..], "a token verified without a valid MAC under the key");
            assert_eq!(h.rod_type.to_be_bytes(), token[0..4]);
            assert_eq!(h.id.to_be_bytes(), token[ID_AT..ID_AT + 8]);
            let _ = f.store.locate(&h);
        }
        Err(e) => {
            let _ = oxcopy_scsi::copy::token_sense(e);
        }
    }
    match f.store.acquire(token) {
        Ok(r) => {
            assert!(issued, "a token the store never issued was acquired");
            assert!(u64::from(**r.payload()) < f.live.len() as u64);
        }
        Err(e) => {
            let _ = oxcopy_scsi::copy::token_sense(e);
        }
    }
    let _ = f
        .store
        .remaining(u64::from_be_bytes(token.get(ID_AT..ID_AT + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8])));
});
