//! Framing: a byte stream ⇄ PDUs (BHS, AHS, header digest, data segment,
//! padding, data digest), RFC 7143 §11.2.
//!
//! Decoding is incremental and bounded: [`decode_frame`] looks at what has
//! arrived, returns `Ok(None)` until a whole PDU is there, and refuses a data
//! segment longer than the negotiated limit *before* buffering it.

use crate::pdu::{bhs_ahs_len, bhs_data_len, Header, BHS_LEN};
use bytes::{Buf, Bytes, BytesMut};

/// Length of a CRC32C digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// AHS type of an Extended CDB (RFC 7143 §11.2.2.3).
pub const AHS_EXTENDED_CDB: u8 = 1;

/// Largest CDB we accept (16 in the BHS + 244 in an Extended CDB AHS).
pub const MAX_CDB_LEN: usize = 260;

/// What the receiver has negotiated: digests, and the largest data segment it
/// accepts (its own MaxRecvDataSegmentLength; 8192 during login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub header_digest: bool,
    pub data_digest: bool,
    pub max_data_segment: u32,
}

impl FrameLimits {
    /// Limits in force during login (no digests, 8 KiB segments).
    pub const LOGIN: FrameLimits = FrameLimits { header_digest: false, data_digest: false, max_data_segment: 8192 };
}

/// A decoded PDU. `bhs` is kept raw so it can be echoed in a Reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub header: Header,
    pub bhs: [u8; BHS_LEN],
    pub ahs: Bytes,
    pub data: Bytes,
}

impl Pdu {
    /// A PDU to send, with no AHS.
    pub fn new(header: Header, data: Bytes) -> Pdu {
        let bhs = header.encode(0, data.len() as u32);
        Pdu { header, bhs, ahs: Bytes::new(), data }
    }

    /// The whole CDB of a SCSI Command: the 16 BHS bytes followed by any
    /// Extended CDB AHS. `None` when the AHS list is malformed.
    pub fn full_cdb(&self) -> Option<Vec<u8>> {
        let Header::ScsiCommand(cmd) = &self.header else { return None };
        let mut cdb = cmd.cdb.to_vec();
        let mut ahs = &self.ahs[..];
        while !ahs.is_empty() {
            if ahs.len() < 3 {
                return None;
            }
            let len = u16::from_be_bytes([ahs[0], ahs[1]]) as usize;
            let ty = ahs[2];
            // AHSLength counts the bytes after the type byte; the AHS is padded to 4.
            let total = (3 + len).div_ceil(4) * 4;
            if len == 0 || total > ahs.len() {
                return None;
            }
            if ty == AHS_EXTENDED_CDB {
                // Byte 3 is reserved; the CDB continuation is len-1 bytes.
                cdb.extend_from_slice(&ahs[4..3 + len]);
                if cdb.len() > MAX_CDB_LEN {
                    return None;
                }
            }
            ahs = &ahs[total..];
        }
        Some(cdb)
    }
}

/// Why a byte stream could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header digest did not match: the length fields cannot be trusted,
    /// so the connection must be closed (RFC 7143 §7.8 at ERL 0).
    #[error("header digest mismatch")]
    HeaderDigest,
    /// The data digest did not match. The PDU was consumed; the receiver
    /// answers with a Reject (Data Digest Error) and may continue.
    #[error("data digest mismatch")]
    DataDigest { bhs: Box<[u8; BHS_LEN]> },
    /// The data segment is longer than the receiver accepts. Nothing was
    /// consumed; the receiver sends a Reject and closes the connection.
    #[error("data segment of {len} bytes exceeds the negotiated {max}")]
    DataSegmentTooLong { bhs: Box<[u8; BHS_LEN]>, len: u32, max: u32 },
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// iSCSI CRC32C digest bytes (sent least significant byte first).
pub fn digest(parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut crc = 0u32;
    for p in parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    crc.to_le_bytes()
}

/// Try to take one whole PDU off the front of `buf`.
pub fn decode_frame(buf: &mut BytesMut, limits: &FrameLimits) -> Result<Option<Pdu>, FrameError> {
    if buf.len() < BHS_LEN {
        return Ok(None);
    }
    let mut bhs = [0u8; BHS_LEN];
    bhs.copy_from_slice(&buf[..BHS_LEN]);
    let ahs_len = bhs_ahs_len(&bhs);
    let hd = if limits.header_digest { DIGEST_LEN } else { 0 };
    // Check the header digest as soon as the header is complete, before
    // acting on its (untrusted) length fields.
    if buf.len() < BHS_LEN + ahs_len + hd {
        return Ok(None);
    }
    if limits.header_digest {
        let want = digest(&[&buf[..BHS_LEN + ahs_len]]);
        if buf[BHS_LEN + ahs_len..BHS_LEN + ahs_len + hd] != want {
            return Err(FrameError::HeaderDigest);
        }
    }
    let data_len = bhs_data_len(&bhs);
    if data_len > limits.max_data_segment {
        return Err(FrameError::DataSegmentTooLong { bhs: Box::new(bhs), len: data_len, max: limits.max_data_segment });
    }
    let data_len = data_len as usize;
    let padded = data_len + pad4(data_len);
    let dd = if limits.data_digest && data_len > 0 { DIGEST_LEN } else { 0 };
    let total = BHS_LEN + ahs_len + hd + padded + dd;
    if buf.len() < total {
        // Reserve once so a large segment arrives without repeated regrowth.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(BHS_LEN);
    let ahs = frame.split_to(ahs_len).freeze();
    frame.advance(hd);
    let data_and_pad = frame.split_to(padded);
    if dd > 0 {
        let want = digest(&[&data_and_pad[..]]);
        if frame[..DIGEST_LEN] != want {
            return Err(FrameError::DataDigest { bhs: Box::new(bhs) });
        }
    }
    let mut data = data_and_pad.freeze();
    data.truncate(data_len);
    Ok(Some(Pdu { header: Header::decode(&bhs), bhs, ahs, data }))
}

/// A PDU ready to send as three slices (for vectored writes): header bytes
/// (BHS + AHS + header digest), the data segment as given, and the trailer
/// (padding + data digest).
#[derive(Debug, Clone)]
pub struct EncodedPdu {
    pub head: Bytes,
    pub data: Bytes,
    pub tail: Bytes,
}

impl EncodedPdu {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.data.len() + self.tail.len()
    }
    /// True when there is nothing to send (never for a real PDU).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The three parts concatenated (tests, small PDUs).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.data);
        v.extend_from_slice(&self.tail);
        v
    }
}

/// Encode a PDU with digests as negotiated by the *sender's* peer.
/// `ahs` must already be padded to a multiple of 4 bytes.
pub fn encode_frame(header: &Header, ahs: &[u8], data: Bytes, header_digest: bool, data_digest: bool) -> EncodedPdu {
    let bhs = header.encode(ahs.len(), data.len() as u32);
    let mut head = BytesMut::with_capacity(BHS_LEN + ahs.len() + DIGEST_LEN);
    head.extend_from_slice(&bhs);
    head.extend_from_slice(ahs);
    if header_digest {
        let d = digest(&[&head[..]]);
        head.extend_from_slice(&d);
    }
    let pad = pad4(data.len());
    let mut tail = BytesMut::with_capacity(pad + DIGEST_LEN);
    tail.extend_from_slice(&[0u8; 3][..pad]);
    if data_digest && !data.is_empty() {
        let d = digest(&[&data[..], &tail[..pad]]);
        tail.extend_from_slice(&d);
    }
    EncodedPdu { head: head.freeze(), data, tail: tail.freeze() }
}

/// Build an Extended CDB AHS for the bytes of a CDB past the first 16.
pub fn extended_cdb_ahs(cdb: &[u8]) -> Vec<u8> {
    if cdb.len() <= 16 {
        return Vec::new();
    }
    let rest = &cdb[16..];
    let len = rest.len() + 1;
    let mut v = Vec::with_capacity(4 + rest.len() + 3);
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.push(AHS_EXTENDED_CDB);
    v.push(0);
    v.extend_from_slice(rest);
    v.resize(v.len() + pad4(v.len()), 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::*;
    use proptest::prelude::*;

    fn nop() -> Header {
        Header::NopOut(NopOut { immediate: true, lun: [0; 8], itt: 1, ttt: RESERVED_TAG, cmd_sn: 1, exp_stat_sn: 1 })
    }

    const ALL: FrameLimits = FrameLimits { header_digest: true, data_digest: true, max_data_segment: 65536 };

    #[test]
    fn rfc_crc32c_example() {
        // RFC 3720 B.4: 32 bytes of zeroes → aa 36 91 8a on the wire.
        assert_eq!(digest(&[&[0u8; 32]]), [0xaa, 0x36, 0x91, 0x8a]);
    }

    #[test]
    fn roundtrip_with_digests_and_padding() {
        let data = Bytes::from_static(b"hello");
        let enc = encode_frame(&nop(), &[], data.clone(), true, true);
        assert_eq!(enc.len(), 48 + 4 + 5 + 3 + 4);
        let mut buf = BytesMut::from(&enc.to_vec()[..]);
        let pdu = decode_frame(&mut buf, &ALL).unwrap().unwrap();
        assert_eq!(pdu.data, data);
        assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let enc = encode_frame(&nop(), &[], Bytes::from(vec![7u8; 13]), true, true).to_vec();
        for n in 0..enc.len() {
            let mut buf = BytesMut::from(&enc[..n]);
            assert_eq!(decode_frame(&mut buf, &ALL), Ok(None), "prefix {n}");
            assert_eq!(buf.len(), n);
        }
    }

    #[test]
    fn bad_header_digest() {
        let mut v = encode_frame(&nop(), &[], Bytes::new(), true, false).to_vec();
        v[10] ^= 1;
        let mut buf = BytesMut::from(&v[..]);
        assert_eq!(decode_frame(&mut buf, &ALL), Err(FrameError::HeaderDigest));
    }

    #[test]
    fn bad_data_digest_consumes_pdu() {
        let mut v = encode_frame(&nop(), &[], Bytes::from_static(b"abcd"), true, true).to_vec();
        let n = v.len();
        v[n - 5] ^= 1;
        v.extend_from_slice(&[1, 2, 3]);
        let mut buf = BytesMut::from(&v[..]);
        assert!(matches!(decode_frame(&mut buf, &ALL), Err(FrameError::DataDigest { .. })));
        assert_eq!(&buf[..], &[1, 2, 3]);
    }

    #[test]
    fn oversized_segment_refused_before_buffering() {
        let mut bhs = nop().encode(0, 0);
        bhs[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        let mut buf = BytesMut::from(&bhs[..]);
        let lim = FrameLimits { header_digest: false, data_digest: false, max_data_segment: 8192 };
        assert!(matches!(
            decode_frame(&mut buf, &lim),
            Err(FrameError::DataSegmentTooLong { len: 0xffffff, max: 8192, .. })
        ));
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn extended_cdb() {
        let cdb: Vec<u8> = (0..32u8).collect();
        let ahs = extended_cdb_ahs(&cdb);
        let mut first = [0u8; 16];
        first.copy_from_slice(&cdb[..16]);
        let h = Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: false,
            attr: TaskAttr::SIMPLE,
            lun: [0; 8],
            itt: 1,
            expected_data_length: 0,
            cmd_sn: 1,
            exp_stat_sn: 1,
            cdb: first,
        });
        let enc = encode_frame(&h, &ahs, Bytes::new(), false, false).to_vec();
        let mut buf = BytesMut::from(&enc[..]);
        let pdu = decode_frame(&mut buf, &FrameLimits::LOGIN).unwrap().unwrap();
        assert_eq!(pdu.full_cdb().unwrap(), cdb);
    }

    #[test]
    fn malformed_ahs_is_none() {
        let mut pdu = Pdu::new(
            Header::ScsiCommand(ScsiCommand {
                immediate: false,
                final_: true,
                read: false,
                write: false,
                attr: TaskAttr::SIMPLE,
                lun: [0; 8],
                itt: 1,
                expected_data_length: 0,
                cmd_sn: 1,
                exp_stat_sn: 1,
                cdb: [0; 16],
            }),
            Bytes::new(),
        );
        for bad in [&[0u8, 0, 1, 0][..], &[0, 9, 1, 0][..], &[0, 1][..], &[0xff, 0xff, 1, 0][..]] {
            pdu.ahs = Bytes::copy_from_slice(bad);
            assert_eq!(pdu.full_cdb(), None);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..400), hd: bool, dd: bool) {
            let lim = FrameLimits { header_digest: hd, data_digest: dd, max_data_segment: 256 };
            let mut buf = BytesMut::from(&v[..]);
            for _ in 0..8 {
                match decode_frame(&mut buf, &lim) {
                    Ok(Some(p)) => { let _ = p.full_cdb(); }
                    _ => break,
                }
            }
        }

        #[test]
        fn data_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..300), hd: bool, dd: bool) {
            let enc = encode_frame(&nop(), &[], Bytes::from(data.clone()), hd, dd).to_vec();
            let lim = FrameLimits { header_digest: hd, data_digest: dd, max_data_segment: 300 };
            let mut buf = BytesMut::from(&enc[..]);
            let pdu = decode_frame(&mut buf, &lim).unwrap().unwrap();
            prop_assert_eq!(&pdu.data[..], &data[..]);
            prop_assert!(buf.is_empty());
        }
    }
}
