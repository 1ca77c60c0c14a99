//! The EXTENDED COPY engine: one copy manager (the destination LUN when it
//! has one, else the source) copies between two LUNs it names by their
//! VPD 83h designators (E4h identification CSCDs). The copy is split into
//! parameter lists of 02h segments within the copy manager's limits
//! ([`oxcopy_initiator::plan::plan_xcopy`]); while each list runs, COPY
//! STATUS (RECEIVE COPY RESULTS, LID1) is polled on the same nexus for the
//! progress bar.

use super::offload::{self, OffloadError, OffloadReport, PollVerdict, Poller};
use crate::conn::{retry_ua, IscsiLun};
use crate::progress::Progress;
use crate::sense;
use bytes::Bytes;
use oxcopy_initiator::plan::{plan_xcopy, XcopyLimits};
use oxcopy_initiator::xcopy::{cdb, Cscd, ListIdUsage, ParamList};
use oxcopy_initiator::DataDir;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The copy manager's limits as it advertises them.
fn limits(cm: &IscsiLun) -> XcopyLimits {
    let x = cm.offload.extended_copy.clone().unwrap_or_default();
    XcopyLimits {
        max_segment_descriptors: x.max_segment_descriptors,
        max_descriptor_list_length: x.max_descriptor_list_length,
        max_segment_length: x.max_segment_length,
    }
}

/// Short name of a LUN for messages.
pub fn lun_name(l: &IscsiLun) -> String {
    format!("LUN {} of {}", l.url.lun, l.url.target)
}

/// Copy `bytes` from byte `src_off` of `src` to byte `dst_off` of `dst`.
pub async fn copy(
    src: &IscsiLun,
    src_off: u64,
    dst: &IscsiLun,
    dst_off: u64,
    bytes: u64,
    progress: &Progress,
) -> Result<OffloadReport, OffloadError> {
    let can = |l: &IscsiLun| l.offload.extended_copy.as_ref().is_some_and(|x| x.can_copy_blocks());
    let cm = if can(dst) { dst } else { src };
    let cm_name = lun_name(cm);
    let mut report = OffloadReport { copy_manager: cm_name.clone(), ..Default::default() };
    let desig = |l: &IscsiLun| {
        let s = l.session.clone();
        let lun = l.lun();
        async move { retry_ua(|| s.lu_designator(lun)).await }
    };
    let sd = desig(src)
        .await
        .map_err(|e| OffloadError::new(format!("VPD 83h of {}: {}", lun_name(src), sense::describe_error(&e)), 0))?;
    let dd = desig(dst)
        .await
        .map_err(|e| OffloadError::new(format!("VPD 83h of {}: {}", lun_name(dst), sense::describe_error(&e)), 0))?;
    let (sbs, dbs) = (src.block_size, dst.block_size);
    let lists = plan_xcopy(src_off / sbs as u64, dst_off / dbs as u64, bytes, sbs, dbs, limits(cm))
        .map_err(|e| OffloadError::new(e.to_string(), 0))?;
    let cscds = vec![Cscd::new(sd, sbs), Cscd::new(dd, dbs)];
    let mut done = 0u64;
    for segs in lists {
        let list_bytes: u64 = segs.iter().map(|s| s.blocks as u64 * sbs as u64).sum();
        let list_id = (offload::list_id() & 0xff) as u8;
        let list = ParamList {
            list_id,
            usage: ListIdUsage::Discard,
            cscds: cscds.clone(),
            segments: segs.iter().map(|s| s.descriptor(0, 1)).collect(),
        };
        report.commands += 1;
        let session = cm.session.clone();
        let lun = cm.lun();
        // One EXTENDED COPY may move gigabytes: allow it the command timeout
        // plus the time the list takes at a slow 10 MiB/s.
        let limit = session.config().command_timeout + Duration::from_secs(list_bytes / (10 << 20));
        let mut task: JoinHandle<_> = tokio::spawn(async move {
            let data = Bytes::from(list.encode());
            let len = data.len() as u32;
            session.submit(lun, &cdb::extended_copy(len), DataDir::Write { data }).await?.with_timeout(limit).await
        });
        let mut poller = Poller::new();
        let mut polling = cm.offload.extended_copy.as_ref().is_some_and(|x| x.receive_copy_status);
        let result = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = tokio::time::sleep(offload::POLL_INTERVAL), if polling => {
                    match cm.session.copy_status(cm.lun(), list_id).await {
                        Ok(st) => {
                            poller.ok();
                            progress.set_position(done + st.bytes().min(list_bytes));
                        }
                        Err(e) => match poller.failed(&e) {
                            PollVerdict::Again => {}
                            PollVerdict::Stop | PollVerdict::Unknown(_) => polling = false,
                        },
                    }
                }
            }
        };
        report.status_polls += poller.polls;
        report.early_polls += poller.early;
        let outcome = match result {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return Err(OffloadError::new(
                    format!("EXTENDED COPY to {cm_name}: {}", sense::describe_error(&e)),
                    done,
                ))
            }
            Err(e) => return Err(OffloadError::new(format!("EXTENDED COPY task failed: {e}"), done)),
        };
        if !outcome.is_good() {
            return Err(OffloadError::new(
                format!("EXTENDED COPY to {cm_name} failed: {}", sense::describe_outcome(&outcome)),
                done,
            ));
        }
        done += list_bytes;
        progress.set_position(done);
    }
    Ok(report)
}
