//! `oxcopy token create|write|info`: a token copy in two halves, possibly
//! on two machines. `create` runs POPULATE TOKEN and saves the 512-byte ROD
//! token to a file only its owner can read (it is a capability: whoever
//! holds it can read the data it represents, within the copy domain);
//! `write` runs WRITE USING TOKEN with such a file; `info` decodes one
//! offline.

use crate::conn::Connector;
use crate::copy::offload::OffloadReport;
use crate::copy::token::{self as engine, Token};
use crate::copy::{lun_extent, xcopy::lun_name};
use crate::fail;
use crate::human;
use crate::progress::Progress;
use crate::url::parse_iscsi_url;
use crate::vpd::{hex, tpc::rod_type_name};
use oxcopy_initiator::odx::TOKEN_LEN;
use oxcopy_initiator::plan::{plan_tokens, TokenLimits};
use oxcopy_scsi::wire::capacity::{ReadCapacity16, READ_CAPACITY16_LEN};
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

/// ROD TYPE of the block device zero token.
const ZERO_TOKEN: u32 = 0xFFFF_0001;

/// The creator LU as the token names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Creator {
    /// The CSCD descriptor type (E4h for an identification descriptor).
    pub descriptor: String,
    /// The designator as VPD 83h would show it (`naa.6…`).
    pub designator: String,
    /// DISK BLOCK LENGTH of the descriptor.
    pub block_length: u32,
}

/// A ROD token, decoded without contacting anything (the layout of
/// oxcopyd's tokens, digest §5.1; other copy managers' tokens decode as far
/// as SPC-4 defines them).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub rod_type: String,
    pub rod_type_name: &'static str,
    pub rod_token_length: u16,
    /// COPY MANAGER ROD TOKEN IDENTIFIER.
    pub token_id: Option<String>,
    pub creator: Option<Creator>,
    /// NUMBER OF BYTES REPRESENTED.
    pub bytes_represented: Option<u128>,
    /// From the device type specific data (READ CAPACITY (16) layout).
    pub block_size: Option<u32>,
    pub blocks_represented: Option<u128>,
    pub lbppbe: Option<u8>,
    pub lbpme: Option<bool>,
    pub lbprz: Option<bool>,
    /// The creating target's SCSI name (target device descriptor).
    pub target: Option<String>,
    /// oxcopyd: which copy manager of the domain issued it, and the creator LU's generation.
    pub copy_manager_id: Option<String>,
    pub generation: Option<u64>,
    /// Whether bytes 480..512 hold a MAC (checked by the copy manager, not here).
    pub authenticated: bool,
}

fn be32(t: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]])
}

fn be64(t: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&t[i..i + 8]);
    u64::from_be_bytes(a)
}

/// Decode a 512-byte ROD token.
pub fn decode(t: &Token) -> TokenInfo {
    let rod_type = be32(t, 0);
    let mut info = TokenInfo {
        rod_type: format!("{rod_type:08X}h"),
        rod_type_name: rod_type_name(rod_type),
        rod_token_length: u16::from_be_bytes([t[6], t[7]]),
        token_id: None,
        creator: None,
        bytes_represented: None,
        block_size: None,
        blocks_represented: None,
        lbppbe: None,
        lbpme: None,
        lbprz: None,
        target: None,
        copy_manager_id: None,
        generation: None,
        authenticated: false,
    };
    if rod_type == ZERO_TOKEN {
        return info;
    }
    info.token_id = Some(format!("{:016x}", be64(t, 8)));
    // CREATOR LOGICAL UNIT DESCRIPTOR (32-byte CSCD descriptor at 16).
    let c = &t[16..48];
    if c[0] == 0xE4 {
        let len = (c[7] as usize).min(20);
        let value = &c[8..8 + len];
        let designator = match c[5] & 0x0f {
            3 => format!("naa.{}", hex(value)),
            2 => format!("eui.{}", hex(value)),
            _ => format!("0x{}", hex(value)),
        };
        info.creator = Some(Creator {
            descriptor: "E4h identification".into(),
            designator,
            block_length: u32::from_be_bytes([0, c[29], c[30], c[31]]),
        });
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&t[48..64]);
    let bytes = u128::from_be_bytes(b);
    info.bytes_represented = Some(bytes);
    // DEVICE TYPE SPECIFIC DATA: READ CAPACITY (16) parameter data from byte 8.
    let mut rc = [0u8; READ_CAPACITY16_LEN];
    rc[8..].copy_from_slice(&t[96..96 + READ_CAPACITY16_LEN - 8]);
    if let Some(rc) = ReadCapacity16::parse(&rc).filter(|rc| rc.block_len > 0) {
        info.block_size = Some(rc.block_len);
        info.blocks_represented = Some(bytes / u128::from(rc.block_len));
        info.lbppbe = Some(rc.lbppbe);
        info.lbpme = Some(rc.lbpme);
        info.lbprz = Some(rc.lbprz);
    }
    // TARGET DEVICE DESCRIPTOR: a SCSI name string designator.
    let g = &t[128..416];
    if g[1] & 0x0f == 8 {
        let len = (g[3] as usize).min(g.len() - 4);
        let name: String = g[4..4 + len].iter().take_while(|&&c| c != 0).map(|&c| c as char).collect();
        if !name.is_empty() {
            info.target = Some(name);
        }
    }
    if t[416..432].iter().any(|&x| x != 0) {
        info.copy_manager_id = Some(hex(&t[416..432]));
        info.generation = Some(be64(t, 432));
    }
    info.authenticated = t[480..512].iter().any(|&x| x != 0);
    info
}

/// Read a token file: exactly 512 bytes.
pub fn read_token(path: &Path) -> anyhow::Result<Token> {
    let data =
        std::fs::read(path).map_err(|e| fail::usage(format!("cannot read token file {}: {e}", path.display())))?;
    if data.len() != TOKEN_LEN {
        return Err(fail::usage(format!(
            "{} is {} bytes, not a {TOKEN_LEN}-byte ROD token",
            path.display(),
            data.len()
        )));
    }
    let mut t = [0u8; TOKEN_LEN];
    t.copy_from_slice(&data);
    Ok(t)
}

/// `oxcopy token info FILE`.
pub fn info(path: &Path, json: bool) -> anyhow::Result<()> {
    let t = read_token(path)?;
    let i = decode(&t);
    if json {
        outln!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(());
    }
    outln!("{}", path.display());
    outln!("  ROD type:           {} {}", i.rod_type, i.rod_type_name);
    outln!("  ROD token length:   {} bytes after byte 7", i.rod_token_length);
    if let Some(id) = &i.token_id {
        outln!("  token identifier:   {id}");
    }
    if let Some(c) = &i.creator {
        outln!("  creator LU:         {} ({}, block length {})", c.designator, c.descriptor, c.block_length);
    }
    if let Some(b) = i.bytes_represented {
        let blocks = match (i.blocks_represented, i.block_size) {
            (Some(n), Some(bs)) => format!(" = {n} blocks of {bs} bytes"),
            _ => String::new(),
        };
        let shown = u64::try_from(b).map(human::bytes).unwrap_or_else(|_| "huge".into());
        outln!("  bytes represented:  {b} ({shown}){blocks}");
    }
    if let (Some(p), Some(m), Some(z)) = (i.lbppbe, i.lbpme, i.lbprz) {
        outln!("  device:             LBPPBE {p}, thin provisioning {}, unmapped reads zero {}", yn(m), yn(z));
    }
    if let Some(t) = &i.target {
        outln!("  created by target:  {t}");
    }
    if let (Some(m), Some(g)) = (&i.copy_manager_id, i.generation) {
        outln!("  copy manager:       {m} (LU generation {g})");
    }
    if i.rod_type == format!("{ZERO_TOKEN:08X}h") {
        outln!("  (the well-known block device zero token: writing it writes zeros)");
    } else {
        outln!(
            "  authentication:     {}",
            if i.authenticated { "MAC present (checked by the copy manager that accepts it)" } else { "none" }
        );
    }
    Ok(())
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Create `path` for writing: it must not exist, mode 0600.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            fail::usage(format!("{} already exists (a token file is never overwritten)", path.display()))
        } else {
            fail::usage(format!("cannot create {}: {e}", path.display()))
        }
    })
}

#[derive(Debug, Serialize)]
struct CreateSummary {
    file: String,
    source: String,
    bytes: u64,
    blocks: u64,
    block_size: u32,
    inactivity_timeout: u32,
    seconds: f64,
    offload: OffloadReport,
}

/// `oxcopy token create SRC [--ttl SECONDS] -o FILE`.
pub async fn create(conn: &Connector, src: &str, ttl: u32, out: &Path, json: bool) -> anyhow::Result<()> {
    let url = parse_iscsi_url(src).map_err(|e| fail::usage(format!("source: {e}")))?;
    let lun = conn.open_lun(&url).await?;
    let x = lun_extent(&url, lun.blocks, lun.block_size, "source").map_err(fail::usage)?;
    let bytes = x.explicit.unwrap_or(x.avail);
    if bytes == 0 {
        return Err(fail::usage("the source range is empty"));
    }
    let tc = lun.offload.token.clone().unwrap_or_default();
    if !tc.can_create() {
        return Err(fail::usage(format!(
            "{} cannot create ROD tokens (offload: {})",
            lun_name(&lun),
            lun.offload.summary()
        )));
    }
    if tc.max_inactivity_timeout > 0 && ttl > tc.max_inactivity_timeout {
        return Err(fail::usage(format!(
            "--ttl {ttl}: {} keeps tokens at most {} s",
            lun_name(&lun),
            tc.max_inactivity_timeout
        )));
    }
    let bs = lun.block_size;
    let lim = engine::limits(&lun);
    let chunks = plan_tokens(x.offset / bs as u64, 0, bytes, bs, bs, lim, TokenLimits::default())
        .map_err(|e| fail::usage(e.to_string()))?;
    if chunks.len() != 1 {
        let max = chunks[0].bytes / bs as u64;
        return Err(fail::usage(format!(
            "the range is {} blocks but one token of {} represents at most {max} blocks; select a smaller range \
             with ?lba=N&blocks=M",
            bytes / bs as u64,
            lun_name(&lun)
        )));
    }
    let mut file = create_private(out)?;
    let t0 = Instant::now();
    let mut report = OffloadReport { copy_manager: lun_name(&lun), ..Default::default() };
    let chunk = chunks.into_iter().next().unwrap_or_else(|| unreachable!());
    let res = engine::populate(&lun, chunk.src, ttl, &mut report).await;
    let token = match res {
        Ok(t) => t,
        Err(why) => {
            let _ = std::fs::remove_file(out);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), lun.session.logout()).await;
            return Err(anyhow::anyhow!(why));
        }
    };
    if let Err(e) = file.write_all(&token).and_then(|_| file.sync_all()) {
        let _ = std::fs::remove_file(out);
        return Err(anyhow::anyhow!("writing {}: {e}", out.display()));
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), lun.session.logout()).await;
    let ttl_shown = if ttl == 0 { tc.default_inactivity_timeout } else { ttl };
    let s = CreateSummary {
        file: out.display().to_string(),
        source: url.to_string(),
        bytes,
        blocks: bytes / bs as u64,
        block_size: bs,
        inactivity_timeout: ttl_shown,
        seconds: t0.elapsed().as_secs_f64(),
        offload: report,
    };
    if json {
        outln!("{}", serde_json::to_string(&s)?);
    } else {
        outln!(
            "token for {} ({} blocks of {bs} bytes) of {} written to {} (mode 0600); it expires after {} s unused",
            human::bytes(bytes),
            s.blocks,
            s.source,
            s.file,
            ttl_shown
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct WriteSummary {
    method: &'static str,
    file: String,
    destination: String,
    bytes: u64,
    seconds: f64,
    bytes_per_second: f64,
    offset_into_rod: u64,
    deleted: bool,
    offload: OffloadReport,
}

/// `oxcopy token write FILE DST [--offset-into-rod BLOCKS] [--delete]`.
pub async fn write(
    conn: &Connector,
    file: &Path,
    dst: &str,
    offset_into_rod: u64,
    delete: bool,
    json: bool,
    show_progress: bool,
) -> anyhow::Result<()> {
    let token = read_token(file)?;
    let info = decode(&token);
    let url = parse_iscsi_url(dst).map_err(|e| fail::usage(format!("destination: {e}")))?;
    let lun = conn.open_lun(&url).await?;
    let x = lun_extent(&url, lun.blocks, lun.block_size, "destination").map_err(fail::usage)?;
    let bs = lun.block_size as u64;
    let bytes = match (x.explicit, info.bytes_represented) {
        (Some(b), _) => b,
        (None, Some(rod)) => {
            let rod = u64::try_from(rod).unwrap_or(u64::MAX);
            let skip = offset_into_rod.saturating_mul(bs);
            if skip >= rod {
                return Err(fail::usage(format!(
                    "--offset-into-rod {offset_into_rod} is past the end of the token's {} blocks of {bs} bytes",
                    rod / bs
                )));
            }
            (rod - skip) / bs * bs
        }
        (None, None) => {
            return Err(fail::usage(
                "this token does not say how many bytes it represents: give the destination range with ?blocks=N",
            ))
        }
    };
    if bytes > x.avail {
        return Err(fail::usage(format!(
            "the token holds {} but {} has room for {} from LBA {}",
            human::bytes(bytes),
            lun_name(&lun),
            human::bytes(x.avail),
            x.offset / bs
        )));
    }
    let tc = lun.offload.token.clone().unwrap_or_default();
    if !tc.write_using_token {
        return Err(fail::usage(format!(
            "{} does not support WRITE USING TOKEN (offload: {})",
            lun_name(&lun),
            lun.offload.summary()
        )));
    }
    let t0 = Instant::now();
    let mut report = OffloadReport { copy_manager: lun_name(&lun), ..Default::default() };
    let progress = Progress::new(show_progress, bytes, "token");
    let r = engine::write(&lun, &token, offset_into_rod, x.offset / bs, bytes, delete, &progress, 0, &mut report).await;
    progress.finish();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), lun.session.logout()).await;
    r.map_err(|why| anyhow::anyhow!(why))?;
    let seconds = t0.elapsed().as_secs_f64();
    let s = WriteSummary {
        method: "token",
        file: file.display().to_string(),
        destination: url.to_string(),
        bytes,
        seconds,
        bytes_per_second: if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 },
        offset_into_rod,
        deleted: delete,
        offload: report,
    };
    if json {
        outln!("{}", serde_json::to_string(&s)?);
    } else {
        outln!(
            "wrote {} to {} from token {} in {:.2} s ({}){}",
            human::bytes(bytes),
            s.destination,
            s.file,
            seconds,
            human::rate(s.bytes_per_second),
            if delete { "; token deleted" } else { "" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token laid out as oxcopyd's `copy::token` builds one.
    fn sample() -> Token {
        let mut t = [0u8; TOKEN_LEN];
        t[0..4].copy_from_slice(&0x0080_0000u32.to_be_bytes());
        t[6..8].copy_from_slice(&0x01F8u16.to_be_bytes());
        t[8..16].copy_from_slice(&7u64.to_be_bytes());
        t[16] = 0xE4;
        t[20] = 0x01;
        t[21] = 0x03;
        t[23] = 16;
        t[24..40].copy_from_slice(&[0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        t[45..48].copy_from_slice(&[0, 2, 0]);
        t[48..64].copy_from_slice(&(1u128 << 20).to_be_bytes());
        t[96..100].copy_from_slice(&512u32.to_be_bytes());
        t[102] = 0xC0;
        t[128] = 0x03;
        t[129] = 0x28;
        let name = b"iqn.2026-11.dev.oxcopy:x";
        t[131] = 28;
        t[132..132 + name.len()].copy_from_slice(name);
        t[416] = 0xAB;
        t[432..440].copy_from_slice(&3u64.to_be_bytes());
        t[480..512].copy_from_slice(&[0x55; 32]);
        t
    }

    #[test]
    fn decodes_our_layout() {
        let i = decode(&sample());
        assert_eq!(i.rod_type, "00800000h");
        assert_eq!(i.rod_type_name, "point-in-time (default)");
        assert_eq!(i.rod_token_length, 0x1F8);
        assert_eq!(i.token_id.as_deref(), Some("0000000000000007"));
        let c = i.creator.unwrap();
        assert_eq!(c.designator, "naa.600102030405060708090a0b0c0d0e0f");
        assert_eq!(c.block_length, 512);
        assert_eq!(i.bytes_represented, Some(1 << 20));
        assert_eq!((i.block_size, i.blocks_represented), (Some(512), Some(2048)));
        assert_eq!((i.lbpme, i.lbprz), (Some(true), Some(true)));
        assert_eq!(i.target.as_deref(), Some("iqn.2026-11.dev.oxcopy:x"));
        assert_eq!(i.generation, Some(3));
        assert!(i.authenticated);
    }

    #[test]
    fn zero_and_garbage_tokens_decode_without_panicking() {
        let z = decode(&oxcopy_initiator::odx::zero_token());
        assert_eq!(z.rod_type_name, "block device zero");
        assert!(z.creator.is_none() && z.bytes_represented.is_none());
        let mut x = 0x1234_5678u32;
        for _ in 0..200 {
            let mut t = [0u8; TOKEN_LEN];
            for b in t.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let _ = decode(&t);
        }
    }

    #[test]
    fn token_files_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tok");
        drop(create_private(&p).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let e = create_private(&p).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        std::fs::write(&p, [0u8; 10]).unwrap();
        assert!(read_token(&p).unwrap_err().to_string().contains("not a 512-byte"));
    }
}
