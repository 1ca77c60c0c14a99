//! Tests against a scripted fake target over an in-memory duplex pipe.

use crate::session::LoginOutcome;
use crate::*;
use bytes::{Bytes, BytesMut};
use oxcopy_iscsi::frame::{decode_frame, encode_frame, FrameLimits, Pdu};
use oxcopy_iscsi::pdu::*;
use oxcopy_testkit::pattern;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

const T: Duration = Duration::from_secs(10);

/// Run a test body with a hard time limit.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(T, f).await.expect("test timed out");
}

pub(crate) struct Fake {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
    buf: BytesMut,
    limits: FrameLimits,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub window: u32,
}

impl Fake {
    /// Next PDU from the initiator (panics after 5 s).
    async fn recv(&mut self) -> Pdu {
        self.try_recv(Duration::from_secs(5)).await.expect("no PDU from initiator")
    }

    async fn try_recv(&mut self, d: Duration) -> Option<Pdu> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = decode_frame(&mut self.buf, &self.limits).expect("bad frame") {
                if let Header::ScsiCommand(c) = &p.header {
                    if !c.immediate {
                        self.exp_cmd_sn = c.cmd_sn.wrapping_add(1);
                    }
                }
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, self.rd.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(self.window).wrapping_sub(1)
    }

    fn next_stat(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = s.wrapping_add(1);
        s
    }

    async fn send(&mut self, h: Header, data: impl Into<Bytes>) {
        let e = encode_frame(&h, &[], data.into(), self.limits.header_digest, self.limits.data_digest);
        self.wr.write_all(&e.to_vec()).await.expect("write to initiator");
    }

    async fn respond(&mut self, itt: u32, status: u8, sense: Option<&[u8]>, resid: (bool, bool, u32)) {
        let data = match sense {
            Some(s) => {
                let mut v = (s.len() as u16).to_be_bytes().to_vec();
                v.extend_from_slice(s);
                v
            }
            None => vec![],
        };
        let h = Header::ScsiResponse(ScsiResponse {
            overflow: resid.0,
            underflow: resid.1,
            residual: resid.2,
            status,
            itt,
            stat_sn: self.next_stat(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            ..Default::default()
        });
        self.send(h, data).await;
    }

    async fn data_in(&mut self, itt: u32, data_sn: u32, offset: u32, data: &[u8], status: Option<u8>) {
        let h = Header::DataIn(DataIn {
            final_: status.is_some(),
            has_status: status.is_some(),
            status: status.unwrap_or(0),
            itt,
            ttt: RESERVED_TAG,
            stat_sn: if status.is_some() { self.next_stat() } else { 0 },
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn,
            buffer_offset: offset,
            ..Default::default()
        });
        self.send(h, Bytes::copy_from_slice(data)).await;
    }
}

fn test_params() -> SessionParams {
    SessionParams {
        target_name: Some("iqn.2026-11.dev.oxcopy:test".into()),
        initiator_max_recv_data_segment_length: 256 * 1024,
        target_max_recv_data_segment_length: 256 * 1024,
        ..SessionParams::default()
    }
}

fn test_config() -> SessionConfig {
    SessionConfig {
        keepalive_interval: None,
        command_timeout: Duration::from_secs(5),
        management_timeout: Duration::from_secs(5),
        ..SessionConfig::for_target("iqn.2026-11.dev.oxcopy:test")
    }
}

/// A session in full-feature phase wired to a scripted fake target.
fn setup_with(params: SessionParams, cfg: SessionConfig, window: u32) -> (Session, Fake) {
    let (a, b) = tokio::io::duplex(4 << 20);
    let (r, w) = tokio::io::split(a);
    let limits = FrameLimits {
        header_digest: params.header_digest,
        data_digest: params.data_digest,
        max_data_segment: params.target_max_recv_data_segment_length,
    };
    let s = Session::start(
        r,
        w,
        BytesMut::new(),
        LoginOutcome { params, stat_sn: 0, exp_cmd_sn: 1, max_cmd_sn: window },
        cfg,
    );
    let (rd, wr) = tokio::io::split(b);
    let fake = Fake { rd, wr, buf: BytesMut::new(), limits, stat_sn: 1, exp_cmd_sn: 1, window };
    (s, fake)
}

fn setup() -> (Session, Fake) {
    setup_with(test_params(), test_config(), 32)
}

fn cmd(p: &Pdu) -> &ScsiCommand {
    match &p.header {
        Header::ScsiCommand(c) => c,
        h => panic!("expected a SCSI Command, got {h:?}"),
    }
}

fn data_out(p: &Pdu) -> &DataOut {
    match &p.header {
        Header::DataOut(d) => d,
        h => panic!("expected a Data-Out, got {h:?}"),
    }
}

#[tokio::test]
async fn read_single_data_in_with_status() {
    bounded(async {
        let (s, mut t) = setup();
        let s2 = s.clone();
        let h =
            tokio::spawn(
                async move { s2.execute(1, &scsi::cdb::read16(8, 8, false), DataDir::Read { len: 4096 }).await },
            );
        let p = t.recv().await;
        let c = cmd(&p).clone();
        assert!(c.read && !c.write && c.final_);
        assert_eq!(c.expected_data_length, 4096);
        assert_eq!(c.cmd_sn, 1);
        assert_eq!(c.exp_stat_sn, 1);
        assert_eq!(c.lun, [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c.cdb[0], 0x88);
        let data = Bytes::from(pattern(1, 4096));
        t.data_in(c.itt, 0, 0, &data, Some(0)).await;
        let o = h.await.unwrap().unwrap();
        assert!(o.is_good());
        assert_eq!(o.data, data);
        assert_eq!(o.residual, Residual::None);
        assert_eq!(o.sense, None);
        // The next command acknowledges StatSN 1.
        let s3 = s.clone();
        let h = tokio::spawn(async move { s3.test_unit_ready(0).await });
        let c = cmd(&t.recv().await).clone();
        assert_eq!((c.cmd_sn, c.exp_stat_sn), (2, 2));
        t.respond(c.itt, 0, None, (false, false, 0)).await;
        h.await.unwrap().unwrap();
        let w = s.wire_stats();
        assert!(w.bytes_received >= 48 * 2 + 4096 && w.bytes_sent >= 96, "{w:?}");
        assert_eq!((w.pdus_sent, w.pdus_received), (2, 2));
    })
    .await;
}

#[tokio::test]
async fn read_multi_data_in_then_response_with_underflow() {
    bounded(async {
        let (s, mut t) = setup();
        let h = tokio::spawn(async move {
            s.execute(0, &scsi::cdb::inquiry(false, 0, 1000), DataDir::Read { len: 1000 }).await
        });
        let c = cmd(&t.recv().await).clone();
        let data = Bytes::from(pattern(1, 600));
        // Out of order on purpose: reassembly goes by buffer offset.
        t.data_in(c.itt, 0, 0, &data[..200], None).await;
        t.data_in(c.itt, 1, 200, &data[200..400], None).await;
        t.data_in(c.itt, 2, 400, &data[400..], None).await;
        t.respond(c.itt, 0, None, (false, true, 400)).await;
        let o = h.await.unwrap().unwrap();
        assert_eq!(o.data, data);
        assert_eq!(o.residual, Residual::Underflow(400));
    })
    .await;
}

#[tokio::test]
async fn data_in_past_buffer_is_a_protocol_error_not_a_panic() {
    bounded(async {
        let (s, mut t) = setup();
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.execute(0, &[0x12, 0, 0, 0, 64, 0], DataDir::Read { len: 64 }).await });
        let c = cmd(&t.recv().await).clone();
        t.data_in(c.itt, 0, 32, &[1u8; 64], None).await;
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::Protocol(_))));
        // The target finishing the task later is harmless; the ITT stays
        // reserved until then.
        assert_eq!(s.tasks_in_flight(), 1);
        t.respond(c.itt, 0, None, (false, false, 0)).await;
        // The session is still usable.
        let s3 = s.clone();
        let h = tokio::spawn(async move { s3.nop().await });
        let p = t.recv().await;
        let Header::NopOut(n) = &p.header else { panic!("{p:?}") };
        assert!(n.immediate && n.ttt == RESERVED_TAG && n.itt != RESERVED_TAG);
        let (itt, exp_cmd_sn, max_cmd_sn) = (n.itt, t.exp_cmd_sn, t.max_cmd_sn());
        let stat_sn = t.next_stat();
        t.send(
            Header::NopIn(NopIn { lun: [0; 8], itt, ttt: RESERVED_TAG, stat_sn, exp_cmd_sn, max_cmd_sn }),
            Bytes::new(),
        )
        .await;
        h.await.unwrap().unwrap();
        assert_eq!(s.tasks_in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn data_in_without_a_read_buffer_and_bad_data_sn() {
    bounded(async {
        let (s, mut t) = setup();
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.execute(0, &[0; 6], DataDir::None).await });
        let c = cmd(&t.recv().await).clone();
        t.data_in(c.itt, 0, 0, &[1u8; 4], Some(0)).await;
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::Protocol(_))));
        let h = tokio::spawn(async move { s.execute(0, &[0x28; 10], DataDir::Read { len: 8 }).await });
        let c = cmd(&t.recv().await).clone();
        t.data_in(c.itt, 5, 0, &[1u8; 4], Some(0)).await;
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::Protocol(_))));
    })
    .await;
}

#[tokio::test]
async fn check_condition_with_sense_is_an_outcome() {
    bounded(async {
        let (s, mut t) = setup();
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.execute(0, &[0; 6], DataDir::None).await });
        let c = cmd(&t.recv().await).clone();
        let mut sense = [0u8; 18];
        sense[0] = 0x70;
        sense[2] = scsi::sense_key::UNIT_ATTENTION;
        sense[7] = 10;
        sense[12] = 0x29;
        t.respond(c.itt, STATUS_CHECK_CONDITION, Some(&sense), (false, false, 0)).await;
        let o = h.await.unwrap().unwrap();
        assert!(o.is_check_condition());
        assert_eq!(o.sense.as_deref(), Some(&sense[..]));
        let si = o.sense_info().unwrap();
        assert_eq!((si.key, si.asc, si.ascq), (scsi::sense_key::UNIT_ATTENTION, 0x29, 0));
        // Typed helpers turn it into an error carrying the outcome.
        let s3 = s.clone();
        let h = tokio::spawn(async move { s3.test_unit_ready(0).await });
        let c = cmd(&t.recv().await).clone();
        t.respond(c.itt, STATUS_CHECK_CONDITION, Some(&sense), (false, false, 0)).await;
        let e = h.await.unwrap().unwrap_err();
        assert_eq!(e.scsi_outcome().unwrap().sense_info().unwrap().asc, 0x29);
        // A SenseLength larger than the segment is a protocol error.
        let h = tokio::spawn(async move { s.execute(0, &[0; 6], DataDir::None).await });
        let c = cmd(&t.recv().await).clone();
        let stat_sn = t.next_stat();
        let (e, m) = (t.exp_cmd_sn, t.max_cmd_sn());
        t.send(
            Header::ScsiResponse(ScsiResponse {
                status: 2,
                itt: c.itt,
                stat_sn,
                exp_cmd_sn: e,
                max_cmd_sn: m,
                ..Default::default()
            }),
            Bytes::from_static(&[0, 200, 0x70, 0]),
        )
        .await;
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::Protocol(_))));
    })
    .await;
}

/// Collect Data-Out PDUs into `buf` until `n` have arrived.
async fn collect_data_out(t: &mut Fake, n: usize, buf: &mut [u8]) -> Vec<DataOut> {
    let mut hs = vec![];
    for _ in 0..n {
        let p = t.recv().await;
        let d = data_out(&p).clone();
        let off = d.buffer_offset as usize;
        buf[off..off + p.data.len()].copy_from_slice(&p.data);
        hs.push(d);
    }
    hs
}

#[tokio::test]
async fn write_immediate_unsolicited_and_several_r2ts() {
    bounded(async {
        let params = SessionParams {
            immediate_data: true,
            initial_r2t: false,
            first_burst_length: 8192,
            max_burst_length: 16384,
            max_outstanding_r2t: 2,
            target_max_recv_data_segment_length: 4096,
            ..test_params()
        };
        let (s, mut t) = setup_with(params, test_config(), 32);
        let data = Bytes::from(pattern(1, 40000));
        let d2 = data.clone();
        let h = tokio::spawn(async move { s.write16(3, 100, d2.slice(..39936), 512, true).await });
        let _ = data;
        let data = Bytes::from(pattern(1, 40000)).slice(..39936);
        let p = t.recv().await;
        let c = cmd(&p).clone();
        assert!(c.write && !c.read && !c.final_, "unsolicited Data-Out follows: F=0");
        assert_eq!(c.expected_data_length, 39936);
        assert_eq!(c.cdb[0], 0x8a);
        assert_eq!(c.cdb[1] & 0x08, 0x08, "FUA");
        assert_eq!(p.data.len(), 4096, "immediate data limited by target MRDSL");
        let mut got = vec![0u8; data.len()];
        got[..4096].copy_from_slice(&p.data);
        // Unsolicited Data-Out up to FirstBurstLength.
        let hs = collect_data_out(&mut t, 1, &mut got).await;
        assert_eq!(hs[0].ttt, RESERVED_TAG);
        assert_eq!((hs[0].buffer_offset, hs[0].data_sn, hs[0].final_), (4096, 0, true));
        // Two R2Ts outstanding at once.
        for (sn, off, len, ttt) in [(0u32, 8192u32, 16384u32, 0x100u32), (1, 24576, 15360, 0x101)] {
            let (e, m) = (t.exp_cmd_sn, t.max_cmd_sn());
            t.send(
                Header::R2t(R2t {
                    lun: c.lun,
                    itt: c.itt,
                    ttt,
                    stat_sn: t.stat_sn,
                    exp_cmd_sn: e,
                    max_cmd_sn: m,
                    r2t_sn: sn,
                    buffer_offset: off,
                    desired_length: len,
                }),
                Bytes::new(),
            )
            .await;
        }
        let hs = collect_data_out(&mut t, 8, &mut got).await;
        for (i, d) in hs[..4].iter().enumerate() {
            assert_eq!((d.ttt, d.data_sn, d.buffer_offset), (0x100, i as u32, 8192 + 4096 * i as u32));
            assert_eq!(d.final_, i == 3);
            assert_eq!(d.itt, c.itt);
        }
        for (i, d) in hs[4..].iter().enumerate() {
            assert_eq!((d.ttt, d.data_sn), (0x101, i as u32));
            assert_eq!(d.final_, i == 3);
        }
        assert_eq!(&got[..], &data[..]);
        t.respond(c.itt, 0, None, (false, false, 0)).await;
        h.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn write_initial_r2t_without_immediate_data() {
    bounded(async {
        let params = SessionParams {
            immediate_data: false,
            initial_r2t: true,
            target_max_recv_data_segment_length: 8192,
            ..test_params()
        };
        let (s, mut t) = setup_with(params, test_config(), 32);
        let data = Bytes::from(pattern(1, 10000));
        let d2 = data.clone();
        let h = tokio::spawn(async move { s.execute(0, &[0x8a; 16], DataDir::Write { data: d2 }).await });
        let p = t.recv().await;
        let c = cmd(&p).clone();
        assert!(c.final_ && c.write && p.data.is_empty());
        // No unsolicited data must arrive.
        assert!(t.try_recv(Duration::from_millis(100)).await.is_none());
        // An R2T outside the buffer fails the command (no panic, no data).
        let mut got = vec![0u8; data.len()];
        let r2t = |off: u32, len: u32, ttt: u32| {
            Header::R2t(R2t {
                itt: c.itt,
                ttt,
                exp_cmd_sn: 2,
                max_cmd_sn: 40,
                buffer_offset: off,
                desired_length: len,
                ..Default::default()
            })
        };
        t.send(r2t(0, 10000, 7), Bytes::new()).await;
        let hs = collect_data_out(&mut t, 2, &mut got).await;
        assert_eq!((hs[0].buffer_offset, hs[1].buffer_offset), (0, 8192));
        assert!(!hs[0].final_ && hs[1].final_);
        assert_eq!(&got[..], &data[..]);
        t.send(r2t(9000, 2000, 8), Bytes::new()).await;
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::Protocol(_))));
    })
    .await;
}

#[tokio::test]
async fn target_nop_in_with_ttt_is_echoed() {
    bounded(async {
        let (s, mut t) = setup();
        t.send(
            Header::NopIn(NopIn {
                lun: [0, 2, 0, 0, 0, 0, 0, 0],
                itt: RESERVED_TAG,
                ttt: 0x5555,
                stat_sn: 1,
                exp_cmd_sn: 1,
                max_cmd_sn: 40,
            }),
            Bytes::new(),
        )
        .await;
        let p = t.recv().await;
        let Header::NopOut(n) = &p.header else { panic!("{p:?}") };
        assert_eq!((n.itt, n.ttt, n.immediate), (RESERVED_TAG, 0x5555, true));
        assert_eq!(n.lun, [0, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(n.cmd_sn, 1);
        assert_eq!(n.exp_stat_sn, 1, "unsolicited NOP-In does not advance StatSN");
        drop(s);
    })
    .await;
}

#[tokio::test]
async fn reject_fails_the_named_command() {
    bounded(async {
        let (s, mut t) = setup();
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.execute(0, &[0xff; 6], DataDir::None).await });
        let p = t.recv().await;
        let stat_sn = t.next_stat();
        t.send(
            Header::Reject(Reject {
                reason: RejectReason::INVALID_PDU_FIELD,
                stat_sn,
                exp_cmd_sn: 2,
                max_cmd_sn: 40,
                data_sn: 0,
            }),
            Bytes::copy_from_slice(&p.bhs),
        )
        .await;
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::Rejected { reason: 0x09 })));
        assert_eq!(s.tasks_in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn waits_for_the_cmdsn_window() {
    bounded(async {
        // MaxCmdSN = 1: exactly one command may be outstanding.
        let (s, mut t) = setup_with(test_params(), test_config(), 1);
        let mut hs = vec![];
        for _ in 0..3 {
            let s2 = s.clone();
            hs.push(tokio::spawn(async move { s2.execute(0, &[0; 6], DataDir::None).await }));
        }
        let a = cmd(&t.recv().await).clone();
        assert_eq!(a.cmd_sn, 1);
        assert!(t.try_recv(Duration::from_millis(150)).await.is_none(), "window is closed");
        // Immediate PDUs are not subject to the window.
        let s2 = s.clone();
        let ping = tokio::spawn(async move { s2.nop().await });
        let p = t.recv().await;
        assert!(matches!(p.header, Header::NopOut(_)));
        let Header::NopOut(n) = p.header else { unreachable!() };
        t.send(
            Header::NopIn(NopIn {
                lun: [0; 8],
                itt: n.itt,
                ttt: RESERVED_TAG,
                stat_sn: t.stat_sn,
                exp_cmd_sn: 1,
                max_cmd_sn: 1,
            }),
            Bytes::new(),
        )
        .await;
        t.stat_sn += 1;
        ping.await.unwrap().unwrap();
        // Completing A opens the window by one: B goes out, C still waits.
        t.respond(a.itt, 0, None, (false, false, 0)).await;
        let b = cmd(&t.recv().await).clone();
        assert_eq!(b.cmd_sn, 2);
        assert!(t.try_recv(Duration::from_millis(100)).await.is_none());
        t.respond(b.itt, 0, None, (false, false, 0)).await;
        let c = cmd(&t.recv().await).clone();
        assert_eq!(c.cmd_sn, 3);
        t.respond(c.itt, 0, None, (false, false, 0)).await;
        for h in hs {
            assert!(h.await.unwrap().unwrap().is_good());
        }
    })
    .await;
}

#[tokio::test]
async fn window_wait_is_bounded() {
    bounded(async {
        let cfg = SessionConfig { command_timeout: Duration::from_millis(200), ..test_config() };
        // MaxCmdSN = ExpCmdSN - 1: window closed from the start.
        let (s, _t) = setup_with(test_params(), cfg, 0);
        let r = s.execute(0, &[0; 6], DataDir::None).await;
        assert!(matches!(r, Err(InitiatorError::Timeout(_))), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn connection_dropped_mid_command() {
    bounded(async {
        let (s, mut t) = setup();
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.execute(0, &[0x28; 10], DataDir::Read { len: 512 }).await });
        let c = cmd(&t.recv().await).clone();
        t.data_in(c.itt, 0, 0, &[0u8; 100], None).await;
        drop(t);
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::ConnectionClosed)));
        s.closed().await;
        assert!(s.is_closed());
        assert!(matches!(s.execute(0, &[0; 6], DataDir::None).await, Err(InitiatorError::ConnectionClosed)));
        assert!(matches!(s.nop().await, Err(InitiatorError::ConnectionClosed)));
    })
    .await;
}

#[tokio::test]
async fn abort_task_completes_the_command_with_aborted() {
    bounded(async {
        let (s, mut t) = setup();
        let pending = s.submit(0, &[0x28; 10], DataDir::Read { len: 512 }).await.unwrap();
        let itt = pending.itt();
        let c = cmd(&t.recv().await).clone();
        assert_eq!(c.itt, itt);
        let s2 = s.clone();
        let abort = tokio::spawn(async move { s2.abort_task(itt).await });
        let p = t.recv().await;
        let Header::TaskMgmtRequest(m) = &p.header else { panic!("{p:?}") };
        assert_eq!(m.function, TmfFunction::ABORT_TASK);
        assert_eq!((m.referenced_task_tag, m.ref_cmd_sn, m.cmd_sn), (itt, 1, 2));
        assert!(m.immediate);
        let stat_sn = t.next_stat();
        t.send(
            Header::TaskMgmtResponse(TaskMgmtResponse {
                response: TmfResponse::COMPLETE,
                itt: m.itt,
                stat_sn,
                exp_cmd_sn: 2,
                max_cmd_sn: 40,
            }),
            Bytes::new(),
        )
        .await;
        assert_eq!(abort.await.unwrap().unwrap(), TmfResponse::COMPLETE);
        assert!(matches!(pending.await, Err(InitiatorError::Aborted)));
        assert_eq!(s.tasks_in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn lun_reset_aborts_that_luns_commands_only() {
    bounded(async {
        let (s, mut t) = setup();
        let a = s.submit(1, &[0; 6], DataDir::None).await.unwrap();
        let b = s.submit(1, &[0; 6], DataDir::None).await.unwrap();
        let other = s.submit(2, &[0; 6], DataDir::None).await.unwrap();
        for _ in 0..3 {
            t.recv().await;
        }
        let s2 = s.clone();
        let reset = tokio::spawn(async move { s2.lun_reset(1).await });
        let p = t.recv().await;
        let Header::TaskMgmtRequest(m) = &p.header else { panic!("{p:?}") };
        assert_eq!(m.function, TmfFunction::LOGICAL_UNIT_RESET);
        assert_eq!(m.lun, [0, 1, 0, 0, 0, 0, 0, 0]);
        let stat_sn = t.next_stat();
        t.send(
            Header::TaskMgmtResponse(TaskMgmtResponse {
                response: TmfResponse::COMPLETE,
                itt: m.itt,
                stat_sn,
                exp_cmd_sn: 4,
                max_cmd_sn: 40,
            }),
            Bytes::new(),
        )
        .await;
        assert_eq!(reset.await.unwrap().unwrap(), TmfResponse::COMPLETE);
        assert!(matches!(a.await, Err(InitiatorError::Aborted)));
        assert!(matches!(b.await, Err(InitiatorError::Aborted)));
        t.respond(other.itt(), 0, None, (false, false, 0)).await;
        assert!(other.await.unwrap().is_good());
    })
    .await;
}

#[tokio::test]
async fn extended_cdb_goes_in_an_ahs() {
    bounded(async {
        let (s, mut t) = setup();
        let cdb: Vec<u8> = (0..32u8).map(|i| i + 0x7f).collect();
        let c2 = cdb.clone();
        let h = tokio::spawn(async move { s.execute(0, &c2, DataDir::None).await });
        let p = t.recv().await;
        assert_eq!(p.full_cdb().unwrap(), cdb);
        t.respond(cmd(&p).itt, 0, None, (false, false, 0)).await;
        h.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn command_timeout_sends_abort_task() {
    bounded(async {
        let (s, mut t) = setup();
        let pending = s.submit(0, &[0; 6], DataDir::None).await.unwrap().with_timeout(Duration::from_millis(100));
        let itt = pending.itt();
        t.recv().await;
        assert!(matches!(pending.await, Err(InitiatorError::Timeout(_))));
        let p = t.recv().await;
        let Header::TaskMgmtRequest(m) = &p.header else { panic!("{p:?}") };
        assert_eq!((m.function, m.referenced_task_tag), (TmfFunction::ABORT_TASK, itt));
    })
    .await;
}

#[tokio::test]
async fn invalid_arguments() {
    bounded(async {
        let (s, _t) = setup();
        assert!(matches!(s.execute(0, &[], DataDir::None).await, Err(InitiatorError::InvalidArgument(_))));
        assert!(matches!(s.execute(0, &[0; 261], DataDir::None).await, Err(InitiatorError::InvalidArgument(_))));
        assert!(matches!(
            s.write16(0, 0, Bytes::from_static(&[0; 100]), 512, false).await,
            Err(InitiatorError::InvalidArgument(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn many_commands_in_flight_complete_out_of_order() {
    bounded(async {
        let (s, mut t) = setup();
        let mut hs = vec![];
        for i in 0..24u32 {
            let s2 = s.clone();
            hs.push(tokio::spawn(async move {
                let o = s2.execute(0, &[0x28, 0, 0, 0, 0, i as u8, 0, 0, 1, 0], DataDir::Read { len: 64 }).await?;
                Ok::<_, InitiatorError>((i, o))
            }));
        }
        let mut cmds = vec![];
        for _ in 0..24 {
            cmds.push(cmd(&t.recv().await).clone());
        }
        let mut sns: Vec<u32> = cmds.iter().map(|c| c.cmd_sn).collect();
        sns.sort();
        assert_eq!(sns, (1..=24).collect::<Vec<_>>());
        for c in cmds.iter().rev() {
            t.data_in(c.itt, 0, 0, &[c.cdb[5]; 64], Some(0)).await;
        }
        for h in hs {
            let (i, o) = h.await.unwrap().unwrap();
            assert_eq!(o.data, vec![i as u8; 64]);
        }
    })
    .await;
}

#[tokio::test]
async fn digests_both_ways() {
    bounded(async {
        let params = SessionParams { header_digest: true, data_digest: true, ..test_params() };
        let (s, mut t) = setup_with(params, test_config(), 32);
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.write16(0, 0, Bytes::from(pattern(1, 1024)), 512, false).await });
        let p = t.recv().await; // decoded with digests checked
        assert_eq!(p.data, Bytes::from(pattern(1, 1024)));
        t.respond(cmd(&p).itt, 0, None, (false, false, 0)).await;
        h.await.unwrap().unwrap();
        let h = tokio::spawn(async move { s.read16(0, 0, 1, 512).await });
        let c = cmd(&t.recv().await).clone();
        t.data_in(c.itt, 0, 0, &pattern(1, 512), Some(0)).await;
        assert_eq!(h.await.unwrap().unwrap(), Bytes::from(pattern(1, 512)));
    })
    .await;
}

#[tokio::test]
async fn text_continuation_and_send_targets() {
    bounded(async {
        let (s, mut t) = setup_with(test_params(), test_config(), 32);
        let h = tokio::spawn(async move { s.send_targets().await });
        let p = t.recv().await;
        let Header::TextRequest(r) = &p.header else { panic!("{p:?}") };
        assert_eq!(&p.data[..], b"SendTargets=All\0");
        assert!(r.final_ && r.ttt == RESERVED_TAG);
        let itt = r.itt;
        let body = b"TargetName=iqn.a\0TargetAddress=10.0.0.1:3260,1\0TargetName=iqn.b\0";
        let resp = |final_: bool, ttt: u32, stat_sn: u32| {
            Header::TextResponse(TextResponse {
                final_,
                continue_: !final_,
                lun: [0; 8],
                itt,
                ttt,
                stat_sn,
                exp_cmd_sn: 2,
                max_cmd_sn: 40,
            })
        };
        let sn = t.next_stat();
        t.send(resp(false, 0x42, sn), Bytes::from_static(&body[..20])).await;
        let p = t.recv().await;
        let Header::TextRequest(r) = &p.header else { panic!("{p:?}") };
        assert_eq!((r.itt, r.ttt, r.cmd_sn, r.exp_stat_sn), (itt, 0x42, 2, 2));
        assert!(p.data.is_empty());
        let sn = t.next_stat();
        t.send(resp(true, RESERVED_TAG, sn), Bytes::from_static(&body[20..])).await;
        let targets = h.await.unwrap().unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].name, "iqn.a");
        assert_eq!(targets[0].addresses, vec!["10.0.0.1:3260,1".to_string()]);
    })
    .await;
}

async fn answer_logout(t: &mut Fake) {
    let p = t.recv().await;
    let Header::LogoutRequest(l) = &p.header else { panic!("{p:?}") };
    assert_eq!(l.reason, LogoutReason::CLOSE_SESSION);
    let stat_sn = t.next_stat();
    t.send(
        Header::LogoutResponse(LogoutResponse {
            response: LogoutResponseCode::SUCCESS,
            itt: l.itt,
            stat_sn,
            exp_cmd_sn: 1,
            max_cmd_sn: 40,
            time2wait: 0,
            time2retain: 0,
        }),
        Bytes::new(),
    )
    .await;
}

#[tokio::test]
async fn logout_closes_the_session() {
    bounded(async {
        let (s, mut t) = setup();
        let other = s.clone();
        let h = tokio::spawn(async move { s.logout().await });
        answer_logout(&mut t).await;
        h.await.unwrap().unwrap();
        other.closed().await;
        assert!(t.try_recv(Duration::from_millis(500)).await.is_none(), "connection closed");
    })
    .await;
}

#[tokio::test]
async fn async_logout_request_logs_out() {
    bounded(async {
        let (s, mut t) = setup();
        let stat_sn = t.next_stat();
        t.send(
            Header::AsyncMessage(AsyncMessage {
                stat_sn,
                exp_cmd_sn: 1,
                max_cmd_sn: 40,
                event: 1,
                param3: 5,
                ..Default::default()
            }),
            Bytes::new(),
        )
        .await;
        answer_logout(&mut t).await;
        s.closed().await;
    })
    .await;
}

#[tokio::test]
async fn keepalive_pings_and_closes_when_unanswered() {
    bounded(async {
        let cfg = SessionConfig {
            keepalive_interval: Some(Duration::from_millis(50)),
            management_timeout: Duration::from_millis(200),
            ..test_config()
        };
        let (s, mut t) = setup_with(test_params(), cfg, 32);
        let p = t.recv().await;
        let Header::NopOut(n) = &p.header else { panic!("{p:?}") };
        assert!(n.itt != RESERVED_TAG && n.ttt == RESERVED_TAG);
        // Not answered: the session declares the connection dead.
        s.closed().await;
        assert!(s.close_reason().unwrap().contains("keepalive"));
    })
    .await;
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    bounded(async {
        let (s, mut t) = setup();
        drop(s);
        assert!(t.try_recv(Duration::from_secs(2)).await.is_none());
    })
    .await;
}

#[tokio::test]
async fn unsolicited_garbage_from_target_closes_cleanly() {
    bounded(async {
        let (s, mut t) = setup();
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.execute(0, &[0; 6], DataDir::None).await });
        t.recv().await;
        // A Login Response in full-feature phase is fatal.
        let mut raw = [0u8; 48];
        raw[0] = 0x23;
        t.wr.write_all(&raw).await.unwrap();
        assert!(matches!(h.await.unwrap(), Err(InitiatorError::ConnectionClosed)));
        assert!(s.close_reason().unwrap().contains("unexpected opcode"));
    })
    .await;
}

/// Random PDUs from a hostile target: never a panic, never a hang.
#[tokio::test]
async fn random_target_pdus_never_panic_or_hang() {
    bounded(async {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Opcodes a target may send in full-feature phase (Logout Response
        // and Login Response only come rarely below: both are fatal here).
        const OPS: [u8; 8] = [0x20, 0x21, 0x22, 0x24, 0x25, 0x31, 0x32, 0x3f];
        for round in 0..100 {
            let cfg = SessionConfig { command_timeout: Duration::from_millis(300), ..test_config() };
            let (s, mut t) = setup_with(test_params(), cfg, 8);
            let mut hs = vec![];
            for i in 0..3u32 {
                let s2 = s.clone();
                let dir = match i {
                    0 => DataDir::Read { len: 700 },
                    1 => DataDir::Write { data: Bytes::from(pattern(1, 3000)) },
                    _ => DataDir::None,
                };
                hs.push(tokio::spawn(async move { s2.execute(0, &[0x28; 10], dir).await }));
            }
            let mut itts = vec![];
            for _ in 0..3 {
                let p = t.recv().await;
                itts.push(bhs_itt(&p.bhs));
            }
            for _ in 0..20 {
                let mut bhs = [0u8; 48];
                for b in bhs.iter_mut() {
                    *b = rnd() as u8;
                }
                // Mostly opcodes a target may send; now and then a fatal one.
                bhs[0] = if rnd() % 25 == 0 {
                    [0x23u8, 0x05, 0x01, 0x26][(rnd() % 4) as usize]
                } else {
                    OPS[(rnd() % OPS.len() as u64) as usize]
                };
                bhs[4] = 0;
                let len = (rnd() % 1200) as usize;
                bhs[5..8].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
                if rnd() % 4 == 0 {
                    bhs[16..20].copy_from_slice(&itts[(rnd() % 3) as usize].to_be_bytes());
                }
                if rnd() % 2 == 0 {
                    bhs[40..44].copy_from_slice(&((rnd() % 4000) as u32).to_be_bytes());
                    bhs[44..48].copy_from_slice(&((rnd() % 4000) as u32).to_be_bytes());
                }
                let mut v = bhs.to_vec();
                v.extend((0..len + (4 - len % 4) % 4).map(|_| rnd() as u8));
                if t.wr.write_all(&v).await.is_err() {
                    break;
                }
            }
            for h in hs {
                // Completes one way or another: outcome, error or timeout.
                let _ = h.await.expect("execute task panicked");
            }
            // Drain whatever the initiator sent back.
            while t.try_recv(Duration::from_millis(1)).await.is_some() {}
            let reason = s.close_reason().unwrap_or_default();
            assert!(!reason.contains("panicked"), "round {round}: {reason}");
        }
    })
    .await;
}
