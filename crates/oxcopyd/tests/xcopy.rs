//! EXTENDED COPY end to end: the in-process daemon (LUN files in a temp dir)
//! driven by our initiator. Copies within and between LUs and targets,
//! overlapping ranges, 512 ↔ 4096 blocks, a sparse 4 GiB copy, access
//! control (the CVE-2020-28374 attack), malformed parameter lists, abort
//! mid-copy, RECEIVE COPY RESULTS, discovery data and metrics.

mod common;
mod xcopy_support;

use bytes::Bytes;
use oxcopy_initiator::xcopy::{self, Cscd, ListIdUsage, ParamList, Segment, CSCD_THIS_LU};
use oxcopy_initiator::{DataDir, InitiatorError, TmfResponse};
use oxcopy_scsi::{Asc, SenseKey};
use std::time::Duration;
use xcopy_support::scenarios::{self, LUN_A, LUN_B};
use xcopy_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_within_and_between_lus() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    scenarios::within_and_between_lus(&s).await;
    s.logout().await.unwrap();
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ranges() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    scenarios::overlapping(&s).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_size_combinations() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    scenarios::block_sizes(&s).await;
    d.shutdown().await;
}

/// A 4 GiB range ("several GiB"), sparse with a few MiB of data, in one
/// command of sixteen 256 MiB segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gib_sparse_copy() {
    let (d, _dir) = XDaemon::start(Sizes { open: 4 * GIB + 64 * MIB, ..Sizes::default() }).await;
    let s = d.session(OPEN).await;
    scenarios::large(&d, &s, 4 * GIB).await;
    d.shutdown().await;
}

/// CVE-2020-28374: an initiator names, in an EXTENDED COPY CSCD, a LUN of
/// another target whose allow-list does not admit it. The copy must be
/// refused with UNREACHABLE COPY TARGET and nothing read from or written to
/// that LUN — whichever end of the copy it is. A target whose allow-list
/// does admit the initiator is reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_between_targets_follow_allow_lists() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    // The victim's own view of its LUN (designators are not secret: they
    // are in every VPD 83h page and often guessable).
    let victim = d.session_as(PRIVATE, OTHER_INITIATOR).await;
    let secret = pattern(90, MIB as usize);
    write(&victim, 0, 0, &secret, 512).await;
    let private_lu = designator(&victim, 0).await;
    // We may not even log in there.
    let refused = tokio::time::timeout(
        STEP,
        oxcopy_initiator::Session::connect(d.addr, {
            let mut c = oxcopy_initiator::SessionConfig::for_target(PRIVATE);
            c.initiator_name = INITIATOR.into();
            c
        }),
    )
    .await
    .expect("login attempt");
    assert!(refused.is_err(), "the allow-list refuses our login");

    let a = designator(&s, LUN_A).await;
    let canary = pattern(91, MIB as usize);
    write(&s, LUN_A, 4096, &canary, 512).await;

    // Read attack: victim → our LUN.
    let o = s.extended_copy(LUN_A, &b2b_list(1, private_lu.clone(), a.clone(), 2048, 0, 4096)).await.unwrap();
    let sense = expect_sense(&o, SenseKey::COPY_ABORTED, Asc::UNREACHABLE_COPY_TARGET, "read attack");
    assert_eq!(sense.command_specific, Some(0));
    same(&read(&s, LUN_A, 4096, MIB, 512).await, &canary, "read attack leaked data into our LUN");
    // The failure is on record for this list identifier.
    let fd = s.copy_failure_details(LUN_A, 1).await.unwrap();
    let fs = oxcopy_initiator::scsi::Sense::parse(&fd.sense).unwrap();
    assert_eq!((fd.status, fs.key, fs.asc, fs.ascq), (2, SenseKey::COPY_ABORTED.0, 0x08, 0x04));

    // Write attack: our LUN → victim, with the destination by designator
    // and with FFFFh as the source.
    let list = ParamList {
        list_id: 2,
        usage: ListIdUsage::Discard,
        cscds: vec![Cscd::new(private_lu.clone(), 0)],
        segments: vec![Segment::BlockToBlock {
            src: CSCD_THIS_LU,
            dst: 0,
            dc: false,
            blocks: 2048,
            src_lba: 4096,
            dst_lba: 0,
        }],
    };
    let o = s.extended_copy(LUN_A, &list).await.unwrap();
    expect_sense(&o, SenseKey::COPY_ABORTED, Asc::UNREACHABLE_COPY_TARGET, "write attack");
    same(&read(&victim, 0, 0, MIB, 512).await, &secret, "write attack changed the victim's LUN");
    same(&file_bytes(&d.file("private0.img"), 0, MIB), &secret, "victim backing file");
    // The protocol identifier and PIV bits are masked, nothing else: a
    // designator one byte off is unreachable too.
    let mut near = a.clone();
    near.value[15] ^= 1;
    let o = s.extended_copy(LUN_A, &b2b_list(3, near, a.clone(), 1, 0, 0)).await.unwrap();
    expect_sense(&o, SenseKey::COPY_ABORTED, Asc::UNREACHABLE_COPY_TARGET, "unknown designator");

    // Allowed: the shared target admits us (without us being logged in there).
    let shared_s = d.session(SHARED).await;
    let shared_lu = designator(&shared_s, 0).await;
    let data = pattern(92, MIB as usize);
    write(&shared_s, 0, 100, &data, 512).await;
    shared_s.logout().await.unwrap();
    let b = designator(&s, LUN_B).await;
    scenarios::copy_ok(&s, LUN_A, &b2b_list(4, shared_lu.clone(), b.clone(), 2048, 100, 7000), "from shared").await;
    same(&read(&s, LUN_B, 7000, MIB, 512).await, &data, "copy from the shared target");
    let back = pattern(93, MIB as usize);
    write(&s, LUN_B, 9000, &back, 512).await;
    scenarios::copy_ok(&s, LUN_B, &b2b_list(5, b, shared_lu, 2048, 9000, 20_000), "to shared").await;
    let shared_s = d.session(SHARED).await;
    same(&read(&shared_s, 0, 20_000, MIB, 512).await, &back, "copy to the shared target");

    // The victim's own initiator, logged in to the open target, may reach
    // its private LUN (the allow-list admits it there).
    let v_open = d.session_as(OPEN, OTHER_INITIATOR).await;
    scenarios::copy_ok(&v_open, LUN_A, &b2b_list(6, private_lu, a, 2048, 0, 50_000), "victim's own copy").await;
    same(&read(&s, LUN_A, 50_000, MIB, 512).await, &secret, "copy by an admitted initiator");
    d.shutdown().await;
}

fn header(list: &mut [u8], cscd_len: u16, seg_len: u32) {
    list[2..4].copy_from_slice(&cscd_len.to_be_bytes());
    list[8..12].copy_from_slice(&seg_len.to_be_bytes());
}

/// Malformed parameter lists get the digest's sense codes and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_parameter_lists_change_nothing() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    let a = designator(&s, LUN_A).await;
    let b = designator(&s, LUN_B).await;
    let (cap, _) = s.read_capacity16(LUN_B).await.unwrap();
    write(&s, LUN_A, 0, &pattern(70, MIB as usize), 512).await;
    let dst_before = pattern(71, MIB as usize);
    write(&s, LUN_B, 0, &dst_before, 512).await;
    let tail_before = read(&s, LUN_B, cap - 2048, MIB, 512).await;
    let unchanged = |what: String| {
        let s = &s;
        let dst_before = &dst_before;
        let tail_before = &tail_before;
        async move {
            same(&read(s, LUN_B, 0, MIB, 512).await, dst_before, &what);
            same(&read(s, LUN_B, cap - 2048, MIB, 512).await, tail_before, &what);
        }
    };
    let good = b2b_list(1, a.clone(), b.clone(), 2048, 0, 0).encode();
    let send = |bytes: Vec<u8>| s.extended_copy_raw(LUN_A, Bytes::from(bytes));

    // Truncated lists (the CDB announces what is sent).
    for n in [1usize, 15, 16, 47, 48, 60, good.len() - 1] {
        let o = send(good[..n].to_vec()).await.unwrap();
        if n < 16 {
            expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB, "list shorter than its header");
        } else {
            expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR, &format!("truncated to {n}"));
        }
    }
    // The CDB announces more than the data-out carries.
    let o = s
        .execute(
            LUN_A,
            &xcopy::cdb::extended_copy(good.len() as u32 + 100),
            DataDir::Write { data: Bytes::from(good.clone()) },
        )
        .await
        .unwrap();
    expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR, "CDB length lies");
    // Header lengths that lie.
    let mut l = good.clone();
    header(&mut l, 96, 28);
    expect_sense(
        &send(l).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::PARAMETER_LIST_LENGTH_ERROR,
        "CSCD length lies",
    );
    let mut l = good.clone();
    header(&mut l, 64, 2800);
    expect_sense(
        &send(l).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::PARAMETER_LIST_LENGTH_ERROR,
        "segment length lies",
    );
    let mut l = good.clone();
    l[80 + 3] = 0x30; // segment descriptor length
    expect_sense(
        &send(l).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::PARAMETER_LIST_LENGTH_ERROR,
        "descriptor length lies",
    );
    let mut l = good.clone();
    l[12..16].copy_from_slice(&16u32.to_be_bytes());
    l.extend([0u8; 16]);
    expect_sense(&send(l).await.unwrap(), SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR, "inline data");
    // Counts over the limits.
    let params = s.copy_operating_parameters(LUN_A).await.unwrap();
    let mut many = b2b_list(1, a.clone(), b.clone(), 2048, 0, 0);
    many.cscds = vec![Cscd::new(a.clone(), 0); usize::from(params.max_cscd_descriptors) + 1];
    expect_sense(
        &s.extended_copy(LUN_A, &many).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::TOO_MANY_TARGET_DESCRIPTORS,
        "65 CSCDs",
    );
    let mut many = b2b_list(1, a.clone(), b.clone(), 1, 0, 0);
    many.segments = vec![many.segments[0].clone(); usize::from(params.max_segment_descriptors) + 1];
    expect_sense(
        &s.extended_copy(LUN_A, &many).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::TOO_MANY_SEGMENT_DESCRIPTORS,
        "65 segments",
    );
    // Unknown types.
    let mut l = good.clone();
    l[16] = 0xE0;
    expect_sense(
        &send(l).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
        "CSCD E0h",
    );
    let mut l = good.clone();
    l[80] = 0x03;
    expect_sense(
        &send(l).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
        "segment 03h",
    );
    // LBAs past the end, as the only segment and after a valid one (which
    // must not run either: every segment is checked before any copies).
    for (src_lba, dst_lba) in [(0, cap - 1), (cap, 0), (u64::MAX - 10, 0), (0, u64::MAX / 256)] {
        let mut l = b2b_list(2, a.clone(), b.clone(), 0xFFFF, 0, 0);
        l.segments.push(Segment::BlockToBlock { src: 0, dst: 1, dc: false, blocks: 0xFFFF, src_lba, dst_lba });
        let o = s.extended_copy(LUN_A, &l).await.unwrap();
        let sense = expect_sense(&o, SenseKey::COPY_ABORTED, Asc::COPY_TARGET_DEVICE_NOT_REACHABLE, "past the end");
        assert_eq!(sense.command_specific, Some(1), "the second segment is at fault");
        let st = s.copy_status_lid4(LUN_A, 2).await.unwrap();
        assert_eq!((st.status, st.segments_processed, st.count), (0x02, 0, 0), "{st:?}");
    }
    // A zero-block segment is a no-op, but its LBAs are still checked.
    let o = s.extended_copy(LUN_A, &b2b_list(3, a.clone(), b.clone(), 0, 0, cap)).await.unwrap();
    expect_sense(&o, SenseKey::COPY_ABORTED, Asc::COPY_TARGET_DEVICE_NOT_REACHABLE, "zero blocks past the end");
    scenarios::copy_ok(&s, LUN_A, &b2b_list(3, a.clone(), b.clone(), 0, 0, 0), "zero blocks").await;
    // A CSCD index beyond the list.
    let mut l = b2b_list(4, a.clone(), b.clone(), 1, 0, 0);
    l.segments[0] = Segment::BlockToBlock { src: 0, dst: 2, dc: false, blocks: 1, src_lba: 0, dst_lba: 0 };
    expect_sense(
        &s.extended_copy(LUN_A, &l).await.unwrap(),
        SenseKey::COPY_ABORTED,
        Asc::UNREACHABLE_COPY_TARGET,
        "CSCD index",
    );
    // LIST ID USAGE 01b, and a list identifier with usage 11b.
    let mut l = good.clone();
    l[1] = 0x08;
    expect_sense(&send(l).await.unwrap(), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_PARAMETER_LIST, "usage 01b");
    let mut l = good.clone();
    l[1] = 0x18;
    expect_sense(
        &send(l).await.unwrap(),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
        "usage 11b with id",
    );
    unchanged("after the malformed lists".into()).await;
    // Parameter list length 0: GOOD, nothing done.
    assert!(s.extended_copy_raw(LUN_A, Bytes::new()).await.unwrap().is_good());
    // And a good list still works.
    scenarios::copy_ok(&s, LUN_A, &b2b_list(5, a, b, 2048, 0, 0), "good list").await;
    same(&read(&s, LUN_B, 0, MIB, 512).await, &read(&s, LUN_A, 0, MIB, 512).await, "good list after the bad ones");
    d.shutdown().await;
}

/// ABORT TASK and LUN RESET stop a running copy between chunks; COPY STATUS
/// then tells how far it got, and the bytes beyond that are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_copy() {
    let (d, _dir) = XDaemon::start(Sizes { open: 768 * MIB, ..Sizes::default() }).await;
    d.running.as_ref().unwrap().registry.set_copy_chunk_bytes(MIB);
    let s = d.session(OPEN).await;
    let a = designator(&s, LUN_A).await;
    for (round, tmf) in ["abort task", "lun reset"].into_iter().enumerate() {
        // Shift 512 MiB down by one block within LUN A: overlapping ranges of
        // one file always take the read/write path, slow enough to catch.
        let len: u64 = 512 * MIB;
        let head = pattern(80 + round as u64, (4 * MIB) as usize);
        fill_file(&d.file("open0.img"), 512, &head);
        let tail_mark = pattern(85 + round as u64, MIB as usize);
        fill_file(&d.file("open0.img"), len - MIB, &tail_mark);
        let list_id = 20 + round as u8;
        let mut segments = Vec::new();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(64 * MIB);
            segments.push(Segment::BlockToBlockOffset {
                src: 0,
                dst: 0,
                bytes: n as u32,
                src_lba: 1 + done / 512,
                dst_lba: done / 512,
                src_offset: 0,
                dst_offset: 0,
            });
            done += n;
        }
        let list = ParamList { list_id, usage: ListIdUsage::Hold, cscds: vec![Cscd::new(a.clone(), 0)], segments };
        let pending = s
            .submit(
                LUN_A,
                &xcopy::cdb::extended_copy(list.encode().len() as u32),
                DataDir::Write { data: Bytes::from(list.encode()) },
            )
            .await
            .unwrap();
        let itt = pending.itt();
        // Wait until it has made progress, then stop it.
        let t0 = std::time::Instant::now();
        loop {
            let st = match s.copy_status_lid4(LUN_A, u32::from(list_id)).await {
                Ok(st) => st,
                // The status request can overtake the copy it asks about (both
                // are in flight at once, and the copy's parameter list must
                // arrive first): until the copy has begun, its list id is
                // unknown (24h/00h). Retry within a bounded time.
                Err(InitiatorError::ScsiStatus(_)) if t0.elapsed() < STEP => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Err(e) => panic!("COPY STATUS: {e}"),
            };
            assert_eq!(st.status, 0x11, "still running after {:?}: {st:?}", t0.elapsed());
            if st.count >= 8 * MIB {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A second copy with the same list identifier is refused meanwhile.
        let dup = s.extended_copy(LUN_A, &ParamList { segments: vec![], ..list.clone() }).await.unwrap();
        expect_sense(&dup, SenseKey::ILLEGAL_REQUEST, Asc::OPERATION_IN_PROGRESS, "duplicate list id");
        let resp = if round == 0 { s.abort_task(itt).await.unwrap() } else { s.lun_reset(LUN_A).await.unwrap() };
        assert_eq!(resp, TmfResponse::COMPLETE, "{tmf}");
        match tokio::time::timeout(STEP, pending).await.expect("aborted command resolves") {
            Err(InitiatorError::Aborted) => {}
            other => panic!("{tmf}: the copy should be aborted, got {other:?}"),
        }
        if round == 1 {
            // The LUN reset's unit attention.
            let _ = s.test_unit_ready(LUN_A).await;
        }
        let st = s.copy_status(LUN_A, list_id).await.unwrap();
        assert_eq!(st.status, 2, "{tmf}: completed with error: {st:?}");
        let copied = st.bytes();
        assert!(copied >= 8 * MIB && copied < len, "{tmf}: {copied} bytes copied");
        assert_eq!(copied % MIB, 0, "{tmf}: whole chunks");
        eprintln!("{tmf}: stopped after {} MiB of {} MiB", copied / MIB, len / MIB);
        // What was copied is right; what was not is untouched.
        same(&file_bytes(&d.file("open0.img"), 0, 4 * MIB), &head, &format!("{tmf}: copied head"));
        assert!(copied + MIB <= len, "{tmf}: stopped too late to check the tail");
        same(&file_bytes(&d.file("open0.img"), len - MIB, MIB), &tail_mark, &format!("{tmf}: untouched tail"));
        // The LU works afterwards.
        let x = pattern(99, 4096);
        write(&s, LUN_A, 1_500_000, &x, 512).await;
        same(&read(&s, LUN_A, 1_500_000, 4096, 512).await, &x, "I/O after the abort");
    }
    d.shutdown().await;
}

/// RECEIVE COPY RESULTS: operating parameters, status of held and
/// discarded lists, failure details, LID4 status, unknown identifiers,
/// records consumed by reading, and no record for LIST ID USAGE 11b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_copy_results() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    let p = s.copy_operating_parameters(LUN_A).await.unwrap();
    assert!(p.snlid);
    assert_eq!((p.max_cscd_descriptors, p.max_segment_descriptors, p.max_descriptor_list_length), (64, 64, 8192));
    assert_eq!((p.max_segment_length, p.max_inline_data_length, p.held_data_limit), (u32::MAX, 0, 0));
    assert_eq!((p.total_concurrent_copies, p.max_concurrent_copies), (255, 255));
    assert_eq!(p.descriptor_types, vec![0x02, 0x07, 0x0A, 0x14, 0xE4]);
    // A short allocation length truncates, never fails.
    let o = s.receive_copy_results(LUN_A, xcopy::sa::OPERATING_PARAMETERS, 0, 10).await.unwrap();
    assert_eq!(o.data.len(), 10);

    // Unknown list identifier.
    let o = s.receive_copy_results(LUN_A, xcopy::sa::COPY_STATUS, 7, 12).await.unwrap();
    let sense = expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB, "unknown list id");
    assert_eq!(sense.sense_key_specific, Some([0xC0, 0, 2]), "field pointer at the LIST IDENTIFIER");

    let a = designator(&s, LUN_A).await;
    write(&s, LUN_A, 0, &pattern(60, (3 * MIB) as usize), 512).await;
    let list = ParamList {
        list_id: 7,
        usage: ListIdUsage::Hold,
        cscds: vec![Cscd::new(a.clone(), 0)],
        segments: vec![
            Segment::BlockToBlock { src: 0, dst: 0, dc: false, blocks: 2048, src_lba: 0, dst_lba: 100_000 },
            Segment::Verify { src: 0, tur: true },
            Segment::BlockToBlock {
                src: 0,
                dst: CSCD_THIS_LU,
                dc: false,
                blocks: 4096,
                src_lba: 2048,
                dst_lba: 200_000,
            },
        ],
    };
    scenarios::copy_ok(&s, LUN_A, &list, "three segments").await;
    let st = s.copy_status(LUN_A, 7).await.unwrap();
    assert_eq!((st.status, st.segments_processed, st.units, st.count), (1, 3, 0, 3 * MIB as u32));
    // Read once, then gone; details of a successful copy say nothing.
    assert!(s.receive_copy_results(LUN_A, xcopy::sa::COPY_STATUS, 7, 12).await.unwrap().is_check_condition());
    scenarios::copy_ok(&s, LUN_A, &list, "again").await;
    assert_eq!(s.copy_failure_details(LUN_A, 7).await.unwrap().available, 0);
    let l4 = s.copy_status_lid4(LUN_A, 7).await.unwrap();
    assert_eq!(
        (l4.service_action, l4.status, l4.completion_status, l4.count, l4.segments_processed),
        (0, 1, 0, 3 * MIB, 3)
    );
    assert_eq!(l4.estimated_delay, 0xFFFF_FFFE);
    assert!(s.receive_copy_results(LUN_A, xcopy::sa::COPY_STATUS_LID4, 7, 64).await.unwrap().is_check_condition());

    // A failed copy: status says error, details carry the sense.
    let mut bad = list.clone();
    bad.list_id = 8;
    bad.segments[2] = Segment::BlockToBlock { src: 0, dst: 5, dc: false, blocks: 1, src_lba: 0, dst_lba: 0 };
    let o = s.extended_copy(LUN_A, &bad).await.unwrap();
    expect_sense(&o, SenseKey::COPY_ABORTED, Asc::UNREACHABLE_COPY_TARGET, "bad CSCD id");
    let st = s.copy_status(LUN_A, 8).await.unwrap();
    assert_eq!((st.status, st.segments_processed), (2, 0));
    let fd = s.copy_failure_details(LUN_A, 8).await.unwrap();
    let fs = oxcopy_initiator::scsi::Sense::parse(&fd.sense).unwrap();
    assert_eq!((fd.status, fs.key, fs.command_specific), (2, SenseKey::COPY_ABORTED.0, Some(2)));
    assert!(s
        .receive_copy_results(LUN_A, xcopy::sa::FAILED_SEGMENT_DETAILS, 8, 64)
        .await
        .unwrap()
        .is_check_condition());

    // Other LU, other session: different namespaces.
    scenarios::copy_ok(&s, LUN_A, &ParamList { list_id: 9, ..list.clone() }, "id 9").await;
    assert!(s.receive_copy_results(LUN_B, xcopy::sa::COPY_STATUS, 9, 12).await.unwrap().is_check_condition());
    let other = d.session(OPEN).await;
    assert!(other.receive_copy_results(LUN_A, xcopy::sa::COPY_STATUS, 9, 12).await.unwrap().is_check_condition());
    assert_eq!(s.copy_status(LUN_A, 9).await.unwrap().status, 1);

    // LIST ID USAGE 11b: no record.
    scenarios::copy_ok(&s, LUN_A, &ParamList { list_id: 0, usage: ListIdUsage::None, ..list.clone() }, "usage 11b")
        .await;
    assert!(s.receive_copy_results(LUN_A, xcopy::sa::COPY_STATUS, 0, 12).await.unwrap().is_check_condition());
    // Session loss drops the nexus's records: the same initiator port
    // (name and ISID) logging in again finds nothing.
    let isid = [0x80, 0, 0, 0x12, 0x34, 0x56];
    let first = d.session_with_isid(OPEN, isid).await;
    scenarios::copy_ok(&first, LUN_A, &ParamList { list_id: 10, ..list.clone() }, "id 10").await;
    let registry = d.running.as_ref().unwrap().registry.clone();
    assert_eq!(registry.copy_manager().record_count(), 1);
    first.logout().await.unwrap();
    let t0 = std::time::Instant::now();
    while registry.copy_manager().record_count() != 0 {
        assert!(t0.elapsed() < STEP, "records of a closed session are dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = d.session_with_isid(OPEN, isid).await;
    assert!(again.receive_copy_results(LUN_A, xcopy::sa::COPY_STATUS, 10, 12).await.unwrap().is_check_condition());
    // Unsupported service actions.
    let o = s.receive_copy_results(LUN_A, 0x01, 0, 64).await.unwrap();
    expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB, "RECEIVE COPY DATA");
    d.shutdown().await;
}

/// INQUIRY 3PC, VPD 00h/8Fh and REPORT SUPPORTED OPERATION CODES agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_copy_discovery() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    let std = s.inquiry(LUN_A, false, 0, 96).await.unwrap();
    assert_eq!(std[5] & 0x08, 0x08, "3PC");
    let pages = s.inquiry(LUN_A, true, 0x00, 255).await.unwrap();
    assert!(pages[4..].windows(2).all(|w| w[0] < w[1]), "ascending: {pages:?}");
    assert!(pages[4..].contains(&0x8F));
    let tpc = s.inquiry(LUN_A, true, 0x8F, 1024).await.unwrap();
    let mut types = Vec::new();
    let mut b = &tpc[4..];
    while b.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        types.push(u16::from_be_bytes([b[0], b[1]]));
        if types.last() == Some(&1) {
            assert_eq!(&b[4..19], &[14, 0x83, 4, 0x00, 0x10, 0x11, 0x1C, 0x84, 6, 0x00, 0x03, 0x04, 0x05, 0x07, 0x08]);
        }
        b = &b[4 + len..];
    }
    // Token copy (ODX): 0000h first (Windows reads only the first), 0106h, 0108h.
    assert_eq!(types, vec![0x0000, 0x0001, 0x0004, 0x0008, 0x000C, 0x0106, 0x0108, 0x8001]);
    // RSOC, all commands: every 83h/84h service action of the VPD list.
    let mut c = [0u8; 12];
    c[0] = 0xA3;
    c[1] = 0x0C;
    c[6..10].copy_from_slice(&8192u32.to_be_bytes());
    let o = s.execute(LUN_A, &c, DataDir::Read { len: 8192 }).await.unwrap().into_result().unwrap();
    let mut found = Vec::new();
    for desc in o.data[4..].chunks(8) {
        if desc[0] == 0x83 || desc[0] == 0x84 {
            assert_eq!(desc[5] & 0x01, 0x01, "SERVACTV");
            assert_eq!(u16::from_be_bytes([desc[6], desc[7]]), 16);
            found.push((desc[0], u16::from_be_bytes([desc[2], desc[3]])));
        }
    }
    assert_eq!(
        found,
        vec![
            (0x83, 0),
            (0x83, 0x10),
            (0x83, 0x11),
            (0x83, 0x1C),
            (0x84, 0),
            (0x84, 3),
            (0x84, 4),
            (0x84, 5),
            (0x84, 7),
            (0x84, 8)
        ]
    );
    d.shutdown().await;
}

/// The metrics endpoint counts copy bytes per method, copy commands by
/// result, and per-LUN reads and writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_copies_and_io() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    let a = designator(&s, LUN_A).await;
    let b = designator(&s, LUN_B).await;
    write(&s, LUN_A, 0, &pattern(1, MIB as usize), 512).await;
    let _ = read(&s, LUN_A, 0, MIB, 512).await;
    scenarios::copy_ok(&s, LUN_A, &b2b_list(1, a.clone(), b, 2048, 0, 0), "metrics copy").await;
    let o = s.extended_copy(LUN_A, &b2b_list(2, a.clone(), a, 7, u64::MAX - 1, 0)).await.unwrap();
    assert!(o.is_check_condition());
    let text = d.scrape().await;
    let m = |name: &str, labels: &str| oxcopyd::metrics_http::sample(&text, name, labels);
    let moved: u64 = ["reflink", "copy_file_range", "read_write", "hole"]
        .iter()
        .map(|k| m("oxcopy_copy_bytes_total", &format!("method=\"{k}\"")))
        .sum();
    assert_eq!(moved, MIB, "{text}");
    assert_eq!(m("oxcopy_copy_commands_total", "command=\"extended_copy\",result=\"ok\""), 1);
    assert_eq!(m("oxcopy_copy_commands_total", "command=\"extended_copy\",result=\"error\""), 1);
    let lun0 = format!("target=\"{OPEN}\",lun=\"0\"");
    assert_eq!(m("oxcopy_lun_write_bytes_total", &lun0), MIB);
    assert_eq!(m("oxcopy_lun_read_bytes_total", &lun0), MIB);
    assert!(m("oxcopy_lun_write_commands_total", &lun0) >= 1);
    assert!(m("oxcopy_lun_read_commands_total", &lun0) >= 1);
    d.shutdown().await;
}

/// A 4 KiB write and a 4 KiB read of cached blocks are done on the thread
/// that received them, with no hand-off to an I/O thread (counted in
/// `oxcopy_lun_inline_commands_total`); a 1 MiB read goes to an I/O thread.
/// Everything reads back right either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_cached_reads_and_writes_are_done_inline() {
    let (d, _dir) = XDaemon::start(Sizes::default()).await;
    let s = d.session(OPEN).await;
    let lun0 = format!("target=\"{OPEN}\",lun=\"0\"");
    let inline = |text: &str| oxcopyd::metrics_http::sample(text, "oxcopy_lun_inline_commands_total", &lun0);
    let before = inline(&d.scrape().await);
    let data = pattern(7, 4096);
    write(&s, LUN_A, 8, &data, 512).await;
    assert_eq!(read(&s, LUN_A, 8, 4096, 512).await, data);
    let after = inline(&d.scrape().await);
    assert_eq!(after - before, 2, "the 4 KiB write and read were done inline");
    write(&s, LUN_A, 2048, &pattern(8, MIB as usize), 512).await;
    assert_eq!(read(&s, LUN_A, 2048, MIB, 512).await, pattern(8, MIB as usize));
    assert_eq!(inline(&d.scrape().await), after, "1 MiB commands go to the I/O threads");
    d.shutdown().await;
}
