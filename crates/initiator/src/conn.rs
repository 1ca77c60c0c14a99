//! The connection tasks: a reader that dispatches target PDUs, a writer
//! that encodes and sends queued PDUs with vectored writes, and keepalive.

use crate::command::{Residual, ScsiOutcome};
use crate::error::InitiatorError;
use crate::shared::{data_out_pdus, Counters, OutPdu, ScsiTask, Shared, Task, TaskKind};
use bytes::{Buf, Bytes, BytesMut};
use oxcopy_iscsi::frame::{decode_frame, encode_frame, FrameError, FrameLimits};
use oxcopy_iscsi::pdu::{
    bhs_itt, bhs_opcode, DataIn, Header, NopOut, Opcode, R2t, ScsiResponse, TmfFunction, TmfResponse, BHS_LEN,
    RESERVED_TAG,
};
use oxcopy_iscsi::{serial, Pdu};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Keep at least this much free space before each read.
const MIN_READ_SPACE: usize = 16 * 1024;
/// Grow the read buffer by this much when short.
const READ_CHUNK: usize = 256 * 1024;
/// Stop batching PDUs into one vectored write past this many bytes.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// ... or this many PDUs (3 slices each).
const MAX_BATCH_PDUS: usize = 128;
/// Slices per write_vectored call (Linux IOV_MAX is 1024).
const MAX_IOV: usize = 256;

/// AsyncEvent codes (RFC 7143 §11.9.1).
const ASYNC_SCSI_EVENT: u8 = 0;
const ASYNC_LOGOUT_REQUEST: u8 = 1;
const ASYNC_DROP_CONNECTION: u8 = 2;
const ASYNC_DROP_ALL_CONNECTIONS: u8 = 3;
const ASYNC_NEGOTIATION_REQUEST: u8 = 4;

// ---------------------------------------------------------------------------
// Reader.

pub(crate) async fn reader_task<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    mut rd: R,
    mut buf: BytesMut,
    limits: FrameLimits,
) {
    let mut closed = shared.closed_tx.subscribe();
    let reason = 'outer: loop {
        loop {
            match decode_frame(&mut buf, &limits) {
                Ok(Some(pdu)) => {
                    Counters::add(&shared.stats.pdus_received, 1);
                    if let Err(e) = on_pdu(&shared, pdu) {
                        break 'outer format!("protocol error: {e}");
                    }
                }
                Ok(None) => break,
                Err(FrameError::DataDigest { bhs }) => on_data_digest_error(&shared, &bhs),
                Err(e) => break 'outer format!("framing error: {e}"),
            }
        }
        if buf.capacity() - buf.len() < MIN_READ_SPACE {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break "connection closed by the target".to_string(),
                Ok(n) => Counters::add(&shared.stats.bytes_received, n as u64),
                Err(e) => break format!("read error: {e}"),
            },
            _ = closed.wait_for(|c| *c) => break "closed locally".to_string(),
        }
    };
    shared.close(&reason);
}

/// A Data-In (or other) PDU failed its data digest: at ERL 0 the task it
/// belongs to cannot be recovered; fail it and keep the connection.
fn on_data_digest_error(shared: &Shared, bhs: &[u8; BHS_LEN]) {
    let itt = bhs_itt(bhs);
    tracing::warn!(itt, opcode = bhs_opcode(bhs).0, "data digest error");
    let mut st = shared.lock();
    fail_task_keep(&mut st.tasks, itt, || InitiatorError::Protocol("data digest error on a PDU of this task".into()));
}

/// Answer the caller of task `itt` with an error. A SCSI task stays
/// registered (answered) until the target finishes it; others are removed.
fn fail_task_keep(tasks: &mut std::collections::HashMap<u32, Task>, itt: u32, e: impl Fn() -> InitiatorError) {
    match tasks.get_mut(&itt) {
        Some(Task { kind: TaskKind::Scsi(t), .. }) => t.reply(Err(e())),
        Some(_) => {
            if let Some(t) = tasks.remove(&itt) {
                t.fail(e);
            }
        }
        None => {}
    }
}

/// Dispatch one PDU from the target. `Err` = fatal for the connection.
fn on_pdu(shared: &Arc<Shared>, pdu: Pdu) -> Result<(), String> {
    let Pdu { header, data, .. } = pdu;
    match header {
        Header::DataIn(h) => on_data_in(shared, h, data),
        Header::ScsiResponse(h) => {
            on_scsi_response(shared, h, data);
            Ok(())
        }
        Header::R2t(h) => {
            on_r2t(shared, h);
            Ok(())
        }
        Header::NopIn(h) => {
            let mut st = shared.lock();
            if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
                shared.window.notify_waiters();
            }
            if h.itt != RESERVED_TAG {
                shared.ack_stat_sn(h.stat_sn.wrapping_add(1));
                match st.tasks.remove(&h.itt) {
                    Some(Task { kind: TaskKind::Nop(tx), .. }) => drop(tx.send(Ok(data))),
                    Some(other) => {
                        st.tasks.insert(h.itt, other);
                        return Err(format!("NOP-In for non-NOP task {:#x}", h.itt));
                    }
                    None => tracing::debug!(itt = h.itt, "NOP-In for an unknown ITT"),
                }
            } else {
                // Unsolicited: StatSN is not advanced.
                shared.ack_stat_sn(h.stat_sn);
            }
            if h.ttt != RESERVED_TAG {
                // Target ping: echo the TTT (immediate, CmdSN not advanced).
                shared.send(OutPdu::new(Header::NopOut(NopOut {
                    immediate: true,
                    lun: h.lun,
                    itt: RESERVED_TAG,
                    ttt: h.ttt,
                    cmd_sn: st.cmd_sn,
                    exp_stat_sn: 0,
                })));
            }
            Ok(())
        }
        Header::TaskMgmtResponse(h) => {
            shared.ack_stat_sn(h.stat_sn.wrapping_add(1));
            let mut st = shared.lock();
            if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
                shared.window.notify_waiters();
            }
            let Some(task) = st.tasks.remove(&h.itt) else {
                tracing::debug!(itt = h.itt, "TMF response for an unknown ITT");
                return Ok(());
            };
            let tmf_cmd_sn = task.cmd_sn;
            let tmf_lun = task.lun;
            let TaskKind::Tmf { function, referenced, tx } = task.kind else {
                return Err(format!("TMF response for non-TMF task {:#x}", h.itt));
            };
            let done = h.response == TmfResponse::COMPLETE
                || (function == TmfFunction::ABORT_TASK && h.response == TmfResponse::TASK_DOES_NOT_EXIST);
            if done {
                // Commands the TMF covered will get no response: fail them.
                let affected: Vec<u32> = st
                    .tasks
                    .iter()
                    .filter(|(itt, t)| {
                        matches!(t.kind, TaskKind::Scsi(_))
                            && match function {
                                TmfFunction::ABORT_TASK => **itt == referenced,
                                TmfFunction::ABORT_TASK_SET
                                | TmfFunction::CLEAR_TASK_SET
                                | TmfFunction::LOGICAL_UNIT_RESET => {
                                    t.lun == tmf_lun && serial::lt(t.cmd_sn, tmf_cmd_sn)
                                }
                                TmfFunction::TARGET_WARM_RESET | TmfFunction::TARGET_COLD_RESET => {
                                    serial::lt(t.cmd_sn, tmf_cmd_sn)
                                }
                                _ => false,
                            }
                    })
                    .map(|(itt, _)| *itt)
                    .collect();
                for itt in affected {
                    if let Some(t) = st.tasks.remove(&itt) {
                        t.fail(|| InitiatorError::Aborted);
                    }
                }
            }
            let _ = tx.send(Ok(h.response));
            Ok(())
        }
        Header::TextResponse(h) => {
            shared.ack_stat_sn(h.stat_sn.wrapping_add(1));
            let mut st = shared.lock();
            if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
                shared.window.notify_waiters();
            }
            let last = h.final_ && !h.continue_;
            let itt = h.itt;
            match st.tasks.get(&itt) {
                Some(Task { kind: TaskKind::Text(tx), .. }) => {
                    let _ = tx.send(Ok(Pdu::new(Header::TextResponse(h), data)));
                    if last {
                        st.tasks.remove(&itt);
                    }
                    Ok(())
                }
                Some(_) => Err(format!("Text Response for non-Text task {itt:#x}")),
                None => {
                    tracing::debug!(itt, "Text Response for an unknown ITT");
                    Ok(())
                }
            }
        }
        Header::LogoutResponse(h) => {
            shared.ack_stat_sn(h.stat_sn.wrapping_add(1));
            let mut st = shared.lock();
            st.update_window(h.exp_cmd_sn, h.max_cmd_sn);
            match st.tasks.remove(&h.itt) {
                Some(Task { kind: TaskKind::Logout(tx), .. }) => {
                    let _ = tx.send(Ok(h.response));
                    Ok(())
                }
                Some(other) => {
                    st.tasks.insert(h.itt, other);
                    Err(format!("Logout Response for non-logout task {:#x}", h.itt))
                }
                None => Err("unsolicited Logout Response".into()),
            }
        }
        Header::Reject(h) => {
            // Targets differ on whether a Reject consumes a StatSN; never
            // acknowledge one that may not have been used yet.
            shared.ack_stat_sn(h.stat_sn);
            let mut st = shared.lock();
            if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
                shared.window.notify_waiters();
            }
            if data.len() < BHS_LEN {
                tracing::warn!(reason = h.reason.0, "Reject without the rejected header");
                return Ok(());
            }
            let mut bhs = [0u8; BHS_LEN];
            bhs.copy_from_slice(&data[..BHS_LEN]);
            let itt = bhs_itt(&bhs);
            let op = bhs_opcode(&bhs);
            tracing::warn!(reason = h.reason.0, opcode = op.0, itt, "PDU rejected by target");
            let reason = h.reason.0;
            let err = || InitiatorError::Rejected { reason };
            if op == Opcode::DATA_OUT {
                // The command itself lives on at the target; answer the
                // caller, keep the ITT until its status arrives.
                fail_task_keep(&mut st.tasks, itt, err);
            } else if itt != RESERVED_TAG {
                if let Some(t) = st.tasks.remove(&itt) {
                    t.fail(err);
                }
            }
            Ok(())
        }
        Header::AsyncMessage(h) => {
            shared.ack_stat_sn(h.stat_sn);
            {
                let mut st = shared.lock();
                if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
                    shared.window.notify_waiters();
                }
            }
            match h.event {
                ASYNC_SCSI_EVENT => {
                    tracing::info!(sense_len = data.len(), "SCSI asynchronous event")
                }
                ASYNC_LOGOUT_REQUEST | ASYNC_NEGOTIATION_REQUEST => {
                    tracing::info!(event = h.event, "target requests logout");
                    let sh = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = sh.logout().await {
                            tracing::warn!("logout requested by target failed: {e}");
                        }
                    });
                }
                ASYNC_DROP_CONNECTION | ASYNC_DROP_ALL_CONNECTIONS => {
                    tracing::warn!(event = h.event, "target will drop the connection")
                }
                e => tracing::debug!(event = e, "ignored asynchronous message"),
            }
            Ok(())
        }
        other => Err(format!("unexpected opcode {:#04x} in full-feature phase", other.opcode().0)),
    }
}

fn on_data_in(shared: &Shared, h: DataIn, data: Bytes) -> Result<(), String> {
    if h.has_status {
        shared.ack_stat_sn(h.stat_sn.wrapping_add(1));
    }
    let mut st = shared.lock();
    if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
        shared.window.notify_waiters();
    }
    let itt = h.itt;
    let Some(task) = st.tasks.get_mut(&itt) else {
        tracing::debug!(itt, "Data-In for an unknown ITT");
        return Ok(());
    };
    let TaskKind::Scsi(t) = &mut task.kind else {
        return Err(format!("Data-In for non-SCSI task {itt:#x}"));
    };
    let mut err = None;
    if t.tx.is_some() {
        if h.data_sn != t.next_data_sn {
            err = Some(format!("Data-In DataSN {} where {} was expected", h.data_sn, t.next_data_sn));
        } else if let Err(e) = t.put_data(h.buffer_offset, data) {
            err = Some(e);
        } else if h.has_status && !h.final_ {
            err = Some("Data-In with status but without the F bit".into());
        }
        t.next_data_sn = t.next_data_sn.wrapping_add(1);
    }
    if let Some(e) = err {
        tracing::warn!(itt, "{e}");
        t.reply(Err(InitiatorError::Protocol(e)));
    }
    if h.has_status {
        if let Some(Task { kind: TaskKind::Scsi(mut t), .. }) = st.tasks.remove(&itt) {
            drop(st);
            let residual = Residual::from_flags(h.overflow, h.underflow, h.residual);
            complete(&mut t, h.status, None, residual);
        }
    }
    Ok(())
}

fn complete(t: &mut ScsiTask, status: u8, sense: Option<Bytes>, residual: Residual) {
    if t.tx.is_none() {
        return;
    }
    let r = match t.take_data() {
        Ok(data) => Ok(ScsiOutcome { status, sense, data, residual }),
        Err(e) => Err(InitiatorError::Protocol(e)),
    };
    t.reply(r);
}

fn on_scsi_response(shared: &Shared, h: ScsiResponse, data: Bytes) {
    shared.ack_stat_sn(h.stat_sn.wrapping_add(1));
    let task = {
        let mut st = shared.lock();
        if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
            shared.window.notify_waiters();
        }
        st.tasks.remove(&h.itt)
    };
    let mut t = match task {
        Some(Task { kind: TaskKind::Scsi(t), .. }) => t,
        Some(other) => {
            other.fail(|| InitiatorError::Protocol("SCSI Response for a non-SCSI task".into()));
            return;
        }
        None => {
            tracing::debug!(itt = h.itt, "SCSI Response for an unknown ITT");
            return;
        }
    };
    if h.response != 0 {
        t.reply(Err(InitiatorError::ServiceResponse(h.response)));
        return;
    }
    // Data segment: SenseLength (2 bytes) + sense data [+ response data].
    let sense = if data.len() >= 2 {
        let n = u16::from_be_bytes([data[0], data[1]]) as usize;
        if 2 + n > data.len() {
            t.reply(Err(InitiatorError::Protocol(format!(
                "SenseLength {n} exceeds the {}-byte data segment",
                data.len()
            ))));
            return;
        }
        (n > 0).then(|| data.slice(2..2 + n))
    } else if data.is_empty() {
        None
    } else {
        t.reply(Err(InitiatorError::Protocol("1-byte SCSI Response data segment".into())));
        return;
    };
    let residual = Residual::from_flags(h.overflow, h.underflow, h.residual);
    complete(&mut t, h.status, sense, residual);
}

fn on_r2t(shared: &Shared, h: R2t) {
    let mut st = shared.lock();
    if st.update_window(h.exp_cmd_sn, h.max_cmd_sn) {
        shared.window.notify_waiters();
    }
    let itt = h.itt;
    let Some(Task { kind: TaskKind::Scsi(t), .. }) = st.tasks.get_mut(&itt) else {
        tracing::warn!(itt, "R2T for an unknown or non-SCSI task");
        return;
    };
    let end = h.buffer_offset as u64 + h.desired_length as u64;
    if h.desired_length == 0 || end > t.write.len() as u64 {
        let e = format!("R2T for [{}, {end}) outside the {}-byte write buffer", h.buffer_offset, t.write.len());
        tracing::warn!(itt, "{e}");
        t.reply(Err(InitiatorError::Protocol(e)));
        return;
    }
    if h.desired_length > shared.params.max_burst_length {
        tracing::debug!(itt, len = h.desired_length, "R2T longer than MaxBurstLength");
    }
    let mrdsl = shared.params.target_max_recv_data_segment_length.max(512) as usize;
    let mut pdus = Vec::new();
    let write = t.write.clone();
    data_out_pdus(&mut pdus, &write, h.lun, itt, h.ttt, h.buffer_offset as usize, end as usize, mrdsl);
    for p in pdus {
        shared.send(p);
    }
}

// ---------------------------------------------------------------------------
// Writer.

fn fill_exp_stat_sn(h: &mut Header, v: u32) {
    match h {
        Header::NopOut(x) => x.exp_stat_sn = v,
        Header::ScsiCommand(x) => x.exp_stat_sn = v,
        Header::TaskMgmtRequest(x) => x.exp_stat_sn = v,
        Header::TextRequest(x) => x.exp_stat_sn = v,
        Header::DataOut(x) => x.exp_stat_sn = v,
        Header::LogoutRequest(x) => x.exp_stat_sn = v,
        _ => {}
    }
}

pub(crate) async fn writer_task<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<OutPdu>,
) {
    let (hd, dd) = (shared.params.header_digest, shared.params.data_digest);
    let mut closed = shared.closed_tx.subscribe();
    let mut queue: VecDeque<Bytes> = VecDeque::with_capacity(MAX_BATCH_PDUS * 3);
    let push = |queue: &mut VecDeque<Bytes>, mut p: OutPdu| -> usize {
        fill_exp_stat_sn(&mut p.header, shared.exp_stat_sn.load(Ordering::Relaxed));
        let e = encode_frame(&p.header, &p.ahs, p.data, hd, dd);
        let n = e.len();
        queue.push_back(e.head);
        if !e.data.is_empty() {
            queue.push_back(e.data);
        }
        if !e.tail.is_empty() {
            queue.push_back(e.tail);
        }
        n
    };
    let result: Result<(), String> = loop {
        let first = tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some(m) => m,
                None => break Ok(()),
            },
            _ = closed.wait_for(|c| *c) => break Ok(()),
        };
        let mut bytes = push(&mut queue, first);
        let mut pdus = 1u64;
        while bytes < MAX_BATCH_BYTES && (pdus as usize) < MAX_BATCH_PDUS {
            match rx.try_recv() {
                Ok(m) => {
                    bytes += push(&mut queue, m);
                    pdus += 1;
                }
                Err(_) => break,
            }
        }
        let r = tokio::select! {
            r = write_all_bufs(&mut wr, &mut queue) => r,
            _ = closed.wait_for(|c| *c) => break Ok(()),
        };
        if let Err(e) = r {
            break Err(format!("write error: {e}"));
        }
        Counters::add(&shared.stats.bytes_sent, bytes as u64);
        Counters::add(&shared.stats.pdus_sent, pdus);
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    if let Err(e) = result {
        shared.close(&e);
    }
}

/// Write every buffer of `queue` with vectored writes, consuming it.
async fn write_all_bufs<W: AsyncWrite + Unpin>(wr: &mut W, queue: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !queue.is_empty() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut n_iov = 0;
        for (slot, b) in iov.iter_mut().zip(queue.iter()) {
            *slot = IoSlice::new(b);
            n_iov += 1;
        }
        let mut n = wr.write_vectored(&iov[..n_iov]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    wr.flush().await
}

// ---------------------------------------------------------------------------
// Keepalive.

pub(crate) async fn keepalive_task(shared: Weak<Shared>, every: Duration) {
    let mut closed = match shared.upgrade() {
        Some(s) => s.closed_tx.subscribe(),
        None => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        let Some(sh) = shared.upgrade() else { return };
        if let Err(e) = sh.ping().await {
            if sh.lock().closed.is_none() {
                sh.close(&format!("keepalive NOP failed: {e}"));
            }
            return;
        }
    }
}
