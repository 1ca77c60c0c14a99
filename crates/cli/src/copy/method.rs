//! `--method`: which engine copies, and why.
//!
//! Four engines: the NVMe Copy command (a controller copies between
//! namespaces of its subsystem), token copy (POPULATE TOKEN + WRITE USING
//! TOKEN), EXTENDED COPY (one copy manager moves the data between two LUNs
//! it reaches), and the host copy (we read and write). [`select`] is pure: it takes what the
//! LUNs advertise ([`OffloadView`]) and returns the engines to try in order;
//! `oxcopy cp` runs them, and for `auto` falls back to the next one when an
//! offload fails (recording the first failure as the [`Fallback`]).

use crate::offload::OffloadCaps;
use serde::Serialize;

/// The `--method` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// NVMe Copy, token copy or EXTENDED COPY if the ends allow it, else host copy.
    Auto,
    /// NVMe Copy command, within one NVMe subsystem (formats 0h and 2h).
    Copy,
    /// POPULATE TOKEN on the source, WRITE USING TOKEN on the destination.
    Token,
    /// EXTENDED COPY (LID1) sent to a copy manager that reaches both LUNs.
    Xcopy,
    /// Read from the source and write to the destination through this host.
    Host,
}

/// A copy engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Copy,
    Token,
    Xcopy,
    Host,
}

impl Method {
    /// The name used in `--method`, JSON and messages.
    pub fn name(self) -> &'static str {
        match self {
            Method::Copy => "copy",
            Method::Token => "token",
            Method::Xcopy => "xcopy",
            Method::Host => "host",
        }
    }

    /// Whether the endpoints allow the engine (reason when not).
    pub fn possible(self, v: &OffloadView) -> Result<(), String> {
        match self {
            Method::Host => Ok(()),
            Method::Copy => {
                let Some(n) = &v.nvme else {
                    return Err("NVMe Copy needs an NVMe source and destination".into());
                };
                if !n.same_subsystem {
                    return Err("the source and destination are not in one NVMe subsystem at one address; NVMe \
                                Copy runs inside one controller"
                        .into());
                }
                if !n.copy_command {
                    return Err(
                        "the controller does not support the Copy command (Identify Controller ONCS bit 8)".into()
                    );
                }
                if n.same_namespace {
                    if n.ocfs != 0 && n.ocfs & 1 == 0 {
                        return Err(format!("the controller does not support Copy format 0h (OCFS {:#x})", n.ocfs));
                    }
                    return Ok(());
                }
                if n.ocfs & 0b100 == 0 {
                    return Err(format!(
                        "copying between namespaces needs Copy format 2h, which the controller does not \
                         support (OCFS {:#x})",
                        n.ocfs
                    ));
                }
                if n.src_block_size != n.dst_block_size {
                    return Err(format!(
                        "the namespaces' block sizes differ ({} and {} bytes)",
                        n.src_block_size, n.dst_block_size
                    ));
                }
                Ok(())
            }
            Method::Xcopy => {
                let (Some(src), Some(dst)) = (&v.src, &v.dst) else {
                    return Err("EXTENDED COPY needs an iSCSI source and destination".into());
                };
                let can = |c: &OffloadCaps| c.extended_copy.as_ref().is_some_and(|x| x.can_copy_blocks());
                if can(dst) || can(src) {
                    Ok(())
                } else {
                    Err("neither LUN advertises EXTENDED COPY (LID1) with block → block segments (02h) and \
                         identification CSCDs (E4h)"
                        .into())
                }
            }
            Method::Token => {
                let (Some(src), Some(dst)) = (&v.src, &v.dst) else {
                    return Err("token copy needs an iSCSI source and destination".into());
                };
                let Some(st) = src.token.as_ref().filter(|t| t.can_create() && t.receive_rod_token_information) else {
                    return Err("the source LUN cannot create ROD tokens (no POPULATE TOKEN / RECEIVE ROD TOKEN \
                                INFORMATION with a ROD type it produces)"
                        .into());
                };
                let Some(dt) = dst.token.as_ref() else {
                    return Err("the destination LUN does not support WRITE USING TOKEN".into());
                };
                if !st.rod_types.iter().any(|r| r.token_out && dt.accepts(r.rod_type)) {
                    return Err("the destination LUN accepts none of the ROD token types the source creates".into());
                }
                Ok(())
            }
        }
    }
}

/// What selection needs to know about the two ends.
#[derive(Debug, Clone, Default)]
pub struct OffloadView {
    /// The source LUN's offload capabilities; `None` for a local source.
    pub src: Option<OffloadCaps>,
    /// The destination's; `None` for a local destination.
    pub dst: Option<OffloadCaps>,
    /// Two NVMe namespaces: what NVMe Copy needs to know.
    pub nvme: Option<NvmeCopyView>,
}

/// Two NVMe namespaces as NVMe Copy sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NvmeCopyView {
    /// The same subsystem at the same address (one controller reaches both).
    pub same_subsystem: bool,
    /// The same namespace (format 0h).
    pub same_namespace: bool,
    /// Identify Controller ONCS bit 8 (Copy).
    pub copy_command: bool,
    /// Identify Controller OCFS (bit n: Copy format nh).
    pub ocfs: u16,
    pub src_block_size: u32,
    pub dst_block_size: u32,
}

/// `auto` did not use an offload it considered: which, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fallback {
    pub from: &'static str,
    pub reason: String,
}

/// The engines to try, in order, and whether failures may fall back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Engines in order of preference; the last one is the host copy for `auto`.
    pub methods: Vec<Method>,
    /// `auto`: a failed offload falls back to the next engine (and says why).
    pub may_fall_back: bool,
}

/// Choose the engines. An explicit method the endpoints do not allow is an
/// error that says why; `auto` lists every offload the endpoints allow
/// (NVMe Copy, token, then EXTENDED COPY), then the host copy.
pub fn select(arg: MethodArg, v: &OffloadView) -> Result<Plan, String> {
    let explicit = |m: Method| -> Result<Plan, String> {
        m.possible(v).map_err(|why| format!("--method {}: {why}", m.name()))?;
        Ok(Plan { methods: vec![m], may_fall_back: false })
    };
    match arg {
        MethodArg::Host => Ok(Plan { methods: vec![Method::Host], may_fall_back: false }),
        MethodArg::Xcopy => explicit(Method::Xcopy),
        MethodArg::Token => explicit(Method::Token),
        MethodArg::Copy => explicit(Method::Copy),
        MethodArg::Auto => {
            let mut methods: Vec<Method> =
                [Method::Copy, Method::Token, Method::Xcopy].into_iter().filter(|m| m.possible(v).is_ok()).collect();
            methods.push(Method::Host);
            Ok(Plan { methods, may_fall_back: true })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::{RodTypeCap, TokenCaps, XcopyCaps};

    fn xcopy_caps() -> OffloadCaps {
        OffloadCaps {
            third_party_copy_bit: true,
            vpd_page: true,
            extended_copy: Some(XcopyCaps {
                lid1: true,
                segment_types: vec![0x02],
                cscd_types: vec![0xe4],
                ..Default::default()
            }),
            token: None,
        }
    }

    fn token_caps() -> OffloadCaps {
        let mut c = xcopy_caps();
        c.token = Some(TokenCaps {
            populate_token: true,
            write_using_token: true,
            receive_rod_token_information: true,
            rod_types: vec![RodTypeCap { rod_type: 0x0001_0000, token_in: true, token_out: true }],
            ..Default::default()
        });
        c
    }

    /// (Portals do not matter: whether one copy manager reaches both LUNs,
    /// or accepts the other's tokens, is found out by trying.)
    fn view(src: Option<OffloadCaps>, dst: Option<OffloadCaps>, _same_portal: bool) -> OffloadView {
        OffloadView { src, dst, nvme: None }
    }

    fn methods(arg: MethodArg, v: &OffloadView) -> Vec<Method> {
        select(arg, v).unwrap().methods
    }

    #[test]
    fn host_always_works() {
        for v in [view(None, None, false), view(Some(token_caps()), Some(token_caps()), true)] {
            assert_eq!(
                select(MethodArg::Host, &v).unwrap(),
                Plan { methods: vec![Method::Host], may_fall_back: false }
            );
        }
    }

    #[test]
    fn auto_without_offload_is_a_host_copy() {
        for v in [
            view(None, None, false),
            view(None, Some(token_caps()), false),
            view(Some(OffloadCaps::default()), Some(OffloadCaps::default()), true),
        ] {
            assert_eq!(methods(MethodArg::Auto, &v), vec![Method::Host], "{v:?}");
        }
    }

    #[test]
    fn auto_prefers_tokens_then_xcopy_then_host() {
        let v = view(Some(token_caps()), Some(token_caps()), true);
        assert_eq!(methods(MethodArg::Auto, &v), vec![Method::Token, Method::Xcopy, Method::Host]);
        assert!(select(MethodArg::Auto, &v).unwrap().may_fall_back);
        let v = view(Some(xcopy_caps()), Some(xcopy_caps()), true);
        assert_eq!(methods(MethodArg::Auto, &v), vec![Method::Xcopy, Method::Host]);
        // Either LUN's copy manager will do for EXTENDED COPY.
        let v = view(Some(xcopy_caps()), Some(OffloadCaps::default()), true);
        assert_eq!(methods(MethodArg::Auto, &v), vec![Method::Xcopy, Method::Host]);
    }

    #[test]
    fn explicit_methods_fail_with_a_reason() {
        let local = view(None, None, false);
        let e = select(MethodArg::Xcopy, &local).unwrap_err();
        assert!(e.starts_with("--method xcopy: EXTENDED COPY needs an iSCSI source"), "{e}");
        let e = select(MethodArg::Token, &local).unwrap_err();
        assert!(e.contains("needs an iSCSI source"), "{e}");
        let v = view(Some(token_caps()), Some(token_caps()), true);
        assert_eq!(select(MethodArg::Xcopy, &v).unwrap(), Plan { methods: vec![Method::Xcopy], may_fall_back: false });
        // Devices without offload.
        let none = view(Some(OffloadCaps::default()), Some(OffloadCaps::default()), true);
        assert!(select(MethodArg::Xcopy, &none).unwrap_err().contains("neither LUN advertises"));
        assert!(select(MethodArg::Token, &none).unwrap_err().contains("cannot create ROD tokens"));
        // Token types that do not match.
        let mut dst = token_caps();
        dst.token.as_mut().unwrap().rod_types =
            vec![RodTypeCap { rod_type: 0xffff_0001, token_in: true, token_out: false }];
        let v = view(Some(token_caps()), Some(dst), true);
        assert!(select(MethodArg::Token, &v).unwrap_err().contains("accepts none"));
        // Different portals (maybe different daemons): tried, not refused up front.
        let v = view(Some(token_caps()), Some(token_caps()), false);
        assert_eq!(methods(MethodArg::Auto, &v), vec![Method::Token, Method::Xcopy, Method::Host]);
    }

    fn nvme(same_subsystem: bool, same_namespace: bool, ocfs: u16, bs: (u32, u32)) -> OffloadView {
        OffloadView {
            src: None,
            dst: None,
            nvme: Some(NvmeCopyView {
                same_subsystem,
                same_namespace,
                copy_command: true,
                ocfs,
                src_block_size: bs.0,
                dst_block_size: bs.1,
            }),
        }
    }

    #[test]
    fn nvme_copy_selection() {
        // Same namespace: format 0h; auto tries it first.
        let v = nvme(true, true, 0b1, (512, 512));
        assert_eq!(methods(MethodArg::Auto, &v), vec![Method::Copy, Method::Host]);
        assert_eq!(methods(MethodArg::Copy, &v), vec![Method::Copy]);
        // Across namespaces: format 2h and equal block sizes.
        assert_eq!(methods(MethodArg::Auto, &nvme(true, false, 0b101, (512, 512))), vec![Method::Copy, Method::Host]);
        let e = select(MethodArg::Copy, &nvme(true, false, 0b1, (512, 512))).unwrap_err();
        assert_eq!(
            e,
            "--method copy: copying between namespaces needs Copy format 2h, which the controller does not support \
             (OCFS 0x1)"
        );
        let e = select(MethodArg::Copy, &nvme(true, false, 0b101, (512, 4096))).unwrap_err();
        assert_eq!(e, "--method copy: the namespaces' block sizes differ (512 and 4096 bytes)");
        assert_eq!(methods(MethodArg::Auto, &nvme(true, false, 0b101, (512, 4096))), vec![Method::Host]);
        // Different subsystems.
        let e = select(MethodArg::Copy, &nvme(false, false, 0b101, (512, 512))).unwrap_err();
        assert!(e.contains("not in one NVMe subsystem at one address"), "{e}");
        // No Copy command.
        let mut v = nvme(true, true, 0, (512, 512));
        if let Some(n) = v.nvme.as_mut() {
            n.copy_command = false;
        }
        assert!(select(MethodArg::Copy, &v).unwrap_err().contains("ONCS bit 8"));
        // iSCSI or local ends.
        let e = select(MethodArg::Copy, &view(Some(token_caps()), Some(token_caps()), true)).unwrap_err();
        assert_eq!(e, "--method copy: NVMe Copy needs an NVMe source and destination");
        let e = select(MethodArg::Token, &nvme(true, true, 1, (512, 512))).unwrap_err();
        assert!(e.contains("needs an iSCSI source"), "{e}");
    }
}
