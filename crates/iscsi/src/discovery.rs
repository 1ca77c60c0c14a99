//! Discovery: the SendTargets text exchange (RFC 7143 §12.3, Appendix C).
//!
//! Target side: [`send_targets_response`] builds the text, [`TextResponder`]
//! cuts it into Text Responses of the initiator's MaxRecvDataSegmentLength
//! (C bit, Target Transfer Tag continuation). Initiator side:
//! [`SendTargetsClient`] builds the request, follows continuations and
//! [`parse_send_targets`] reads the result.

use crate::frame::Pdu;
use crate::pdu::{Header, TextRequest, TextResponse, RESERVED_TAG};
use crate::text::{self, TextAccumulator, TextError, TextLimits, TextWriter};
use bytes::Bytes;

/// The SendTargets value asking for every target.
pub const SEND_TARGETS_ALL: &str = "All";

/// The text data of a SendTargets response.
///
/// `request_value` is what followed `SendTargets=`: `All` lists every
/// target; a target name lists that one only (nothing if unknown). An empty
/// value means "the session's target": the daemon passes that target's name
/// instead. Each target is `(iqn, ["addr:port,tpgt", ...])`.
pub fn send_targets_response(request_value: &str, targets: &[(String, Vec<String>)]) -> Vec<u8> {
    let mut w = TextWriter::new();
    for (name, addrs) in targets {
        if request_value != SEND_TARGETS_ALL && request_value != name {
            continue;
        }
        w.push("TargetName", name);
        for a in addrs {
            w.push("TargetAddress", a);
        }
    }
    w.into_bytes()
}

/// One target found by SendTargets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    /// Its TargetName.
    pub name: String,
    /// Its portals, `addr:port,tpgt` as sent (may be empty: use the
    /// discovery portal).
    pub addresses: Vec<String>,
}

/// Parse SendTargets response text. `TargetAddress` before any `TargetName`
/// is an error; other keys are ignored.
pub fn parse_send_targets(data: &[u8]) -> Result<Vec<DiscoveredTarget>, TextError> {
    let pairs = text::parse_with(data, TextLimits::SEND_TARGETS)?;
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for p in pairs {
        match p.key {
            "TargetName" => out.push(DiscoveredTarget { name: p.value.to_string(), addresses: Vec::new() }),
            "TargetAddress" => match out.last_mut() {
                Some(t) => t.addresses.push(p.value.to_string()),
                None => return Err(TextError::InvalidValue { key: p.key.to_string(), value: p.value.to_string() }),
            },
            _ => {}
        }
    }
    Ok(out)
}

/// Sequence numbers a Text Response carries, supplied by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqNums {
    /// StatSN of this response.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// Why a Text Request does not continue the exchange in progress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextExchangeError {
    /// Not a Text Request / Text Response.
    #[error("not a text PDU")]
    NotText,
    /// The ITT differs from the exchange's.
    #[error("ITT {got:#x} does not match the exchange's {want:#x}")]
    WrongItt { got: u32, want: u32 },
    /// The Target Transfer Tag differs.
    #[error("target transfer tag {got:#x} does not match {want:#x}")]
    WrongTtt { got: u32, want: u32 },
    /// A continuation request carried data.
    #[error("continuation request carries data")]
    UnexpectedData,
    /// Text data was bad.
    #[error(transparent)]
    Text(#[from] TextError),
}

/// Sends a (possibly long) text response in pieces of at most the
/// initiator's MaxRecvDataSegmentLength.
///
/// Every piece but the last has C=1, F=0 and the given Target Transfer Tag;
/// the initiator answers each with an empty Text Request carrying that ITT
/// and TTT ([`TextResponder::accepts`]), and the daemon then sends
/// [`TextResponder::next_response`] again. The last piece has F=1, C=0 and
/// TTT=0xffffffff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextResponder {
    data: Bytes,
    offset: usize,
    itt: u32,
    ttt: u32,
    lun: [u8; 8],
    max_segment: usize,
    started: bool,
}

impl TextResponder {
    /// A responder for `data` answering the request `itt`/`lun`. `ttt` is any
    /// tag of the daemon's choosing other than 0xffffffff; `max_segment` the
    /// initiator's MaxRecvDataSegmentLength.
    pub fn new(data: Vec<u8>, itt: u32, lun: [u8; 8], ttt: u32, max_segment: u32) -> Self {
        let ttt = if ttt == RESERVED_TAG { 0 } else { ttt };
        TextResponder {
            data: Bytes::from(data),
            offset: 0,
            itt,
            ttt,
            lun,
            max_segment: (max_segment as usize).max(1),
            started: false,
        }
    }

    /// True once the final piece was produced.
    pub fn is_done(&self) -> bool {
        self.started && self.offset >= self.data.len()
    }

    /// The next Text Response.
    pub fn next_response(&mut self, seq: SeqNums) -> Pdu {
        self.started = true;
        let end = self.offset.saturating_add(self.max_segment).min(self.data.len());
        let start = self.offset.min(end);
        let piece = self.data.slice(start..end);
        self.offset = end;
        let last = end >= self.data.len();
        let h = TextResponse {
            final_: last,
            continue_: !last,
            lun: self.lun,
            itt: self.itt,
            ttt: if last { RESERVED_TAG } else { self.ttt },
            stat_sn: seq.stat_sn,
            exp_cmd_sn: seq.exp_cmd_sn,
            max_cmd_sn: seq.max_cmd_sn,
        };
        Pdu::new(Header::TextResponse(h), piece)
    }

    /// Whether `pdu` is the initiator's request for the next piece.
    pub fn accepts(&self, pdu: &Pdu) -> Result<(), TextExchangeError> {
        let Header::TextRequest(req) = &pdu.header else {
            return Err(TextExchangeError::NotText);
        };
        if req.itt != self.itt {
            return Err(TextExchangeError::WrongItt { got: req.itt, want: self.itt });
        }
        if req.ttt != self.ttt {
            return Err(TextExchangeError::WrongTtt { got: req.ttt, want: self.ttt });
        }
        if !pdu.data.is_empty() {
            return Err(TextExchangeError::UnexpectedData);
        }
        Ok(())
    }
}

/// What the SendTargets client does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextStep {
    /// Send this (continuation) Text Request.
    Send(Pdu),
    /// The exchange finished with these targets.
    Done(Vec<DiscoveredTarget>),
}

/// Initiator side of SendTargets: builds the request, asks for each
/// continued piece, reassembles and parses the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendTargetsClient {
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    value: String,
    acc: TextAccumulator,
}

impl SendTargetsClient {
    /// A client asking `SendTargets=<value>` (normally [`SEND_TARGETS_ALL`])
    /// with task tag `itt`. Requests are immediate: `cmd_sn` is not advanced.
    pub fn new(itt: u32, cmd_sn: u32, exp_stat_sn: u32, value: &str) -> Self {
        SendTargetsClient {
            itt,
            cmd_sn,
            exp_stat_sn,
            value: value.to_string(),
            acc: TextAccumulator::new(TextLimits::SEND_TARGETS.max_len),
        }
    }

    /// ExpStatSN to use next (advanced by each response).
    pub fn exp_stat_sn(&self) -> u32 {
        self.exp_stat_sn
    }

    fn pdu(&self, ttt: u32, data: Bytes) -> Pdu {
        Pdu::new(
            Header::TextRequest(TextRequest {
                immediate: true,
                final_: true,
                continue_: false,
                lun: [0; 8],
                itt: self.itt,
                ttt,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
            }),
            data,
        )
    }

    /// The Text Request to send first.
    pub fn request(&self) -> Pdu {
        let mut w = TextWriter::new();
        w.push("SendTargets", &self.value);
        self.pdu(RESERVED_TAG, Bytes::from(w.into_bytes()))
    }

    /// Consume one Text Response.
    pub fn on_pdu(&mut self, pdu: &Pdu) -> Result<TextStep, TextExchangeError> {
        let Header::TextResponse(rsp) = &pdu.header else {
            return Err(TextExchangeError::NotText);
        };
        if rsp.itt != self.itt {
            return Err(TextExchangeError::WrongItt { got: rsp.itt, want: self.itt });
        }
        self.exp_stat_sn = rsp.stat_sn.wrapping_add(1);
        self.acc.push(&pdu.data)?;
        if rsp.continue_ || !rsp.final_ {
            return Ok(TextStep::Send(self.pdu(rsp.ttt, Bytes::new())));
        }
        let data = self.acc.take();
        Ok(TextStep::Done(parse_send_targets(&data)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<(String, Vec<String>)> {
        vec![
            ("iqn.2024-01.org.oxcopy:a".into(), vec!["10.0.0.1:3260,1".into(), "[fe80::1]:3260,2".into()]),
            ("iqn.2024-01.org.oxcopy:b".into(), vec![]),
        ]
    }

    #[test]
    fn build_and_parse() {
        let t = targets();
        let all = send_targets_response("All", &t);
        assert_eq!(
            &all[..],
            &b"TargetName=iqn.2024-01.org.oxcopy:a\0TargetAddress=10.0.0.1:3260,1\0\
TargetAddress=[fe80::1]:3260,2\0TargetName=iqn.2024-01.org.oxcopy:b\0"[..]
        );
        let parsed = parse_send_targets(&all).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].addresses.len(), 2);
        assert!(parsed[1].addresses.is_empty());
        let one = send_targets_response("iqn.2024-01.org.oxcopy:b", &t);
        assert_eq!(parse_send_targets(&one).unwrap().len(), 1);
        assert!(send_targets_response("iqn.none", &t).is_empty());
        assert!(parse_send_targets(b"TargetAddress=1.2.3.4:3260,1\0").is_err());
    }

    #[test]
    fn every_prefix_of_response_is_handled() {
        let all = send_targets_response("All", &targets());
        for n in 0..=all.len() {
            let _ = parse_send_targets(&all[..n]);
        }
    }

    #[test]
    fn continuation_roundtrip() {
        let many: Vec<(String, Vec<String>)> = (0..200)
            .map(|i| (format!("iqn.2024-01.org.oxcopy:t{i}"), vec![format!("10.0.0.{}:3260,1", i % 250)]))
            .collect();
        let data = send_targets_response("All", &many);
        let mut client = SendTargetsClient::new(7, 10, 3, SEND_TARGETS_ALL);
        let req = client.request();
        assert_eq!(&req.data[..], b"SendTargets=All\0");
        let mut resp = TextResponder::new(data, 7, [0; 8], 0x55, 512);
        let mut stat_sn = 3;
        let mut rounds = 0;
        loop {
            let seq = SeqNums { stat_sn, exp_cmd_sn: 10, max_cmd_sn: 20 };
            stat_sn += 1;
            let pdu = resp.next_response(seq);
            assert!(pdu.data.len() <= 512);
            match client.on_pdu(&pdu).unwrap() {
                TextStep::Send(cont) => {
                    resp.accepts(&cont).unwrap();
                    rounds += 1;
                }
                TextStep::Done(t) => {
                    assert_eq!(t.len(), 200);
                    assert_eq!(t[199].name, "iqn.2024-01.org.oxcopy:t199");
                    break;
                }
            }
        }
        assert!(resp.is_done());
        assert!(rounds > 5);
        assert_eq!(client.exp_stat_sn(), stat_sn);
    }

    #[test]
    fn responder_rejects_wrong_continuation() {
        let r = TextResponder::new(vec![b'a'; 100], 1, [0; 8], 9, 10);
        let c = SendTargetsClient::new(2, 0, 0, "All");
        assert!(matches!(r.accepts(&c.pdu(9, Bytes::new())), Err(TextExchangeError::WrongItt { .. })));
        let c = SendTargetsClient::new(1, 0, 0, "All");
        assert!(matches!(r.accepts(&c.pdu(8, Bytes::new())), Err(TextExchangeError::WrongTtt { .. })));
        assert!(matches!(r.accepts(&c.request()), Err(TextExchangeError::WrongTtt { .. })));
        assert!(r.accepts(&c.pdu(9, Bytes::new())).is_ok());
    }
}
