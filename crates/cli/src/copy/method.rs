//! `--method`: which engine copies, and why.
//!
//! Three engines: token copy (POPULATE TOKEN + WRITE USING TOKEN), EXTENDED
//! COPY (one copy manager moves the data between two LUNs it reaches), and
//! the host copy (we read and write). [`select`] is pure: it takes what the
//! LUNs advertise ([`OffloadView`]) and what this build can run, and returns
//! the engine plus, for `auto`, the fallback it took and why.

use crate::offload::OffloadCaps;
use serde::Serialize;

/// The `--method` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Token copy if the LUNs allow it, else EXTENDED COPY, else host copy.
    Auto,
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
    Token,
    Xcopy,
    Host,
}

impl Method {
    /// The name used in `--method`, JSON and messages.
    pub fn name(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::Xcopy => "xcopy",
            Method::Host => "host",
        }
    }

    /// Whether this build of oxcopy can run the engine.
    pub fn built(self) -> Result<(), String> {
        match self {
            Method::Host => Ok(()),
            Method::Xcopy => Err("EXTENDED COPY is not supported by this build of oxcopy yet".into()),
            Method::Token => Err("token copy is not supported by this build of oxcopy yet".into()),
        }
    }

    /// Whether the endpoints allow the engine (reason when not).
    pub fn possible(self, v: &OffloadView) -> Result<(), String> {
        match self {
            Method::Host => Ok(()),
            Method::Xcopy => {
                let (Some(src), Some(dst)) = (&v.src, &v.dst) else {
                    return Err("EXTENDED COPY needs an iSCSI source and destination".into());
                };
                if !v.same_portal {
                    return Err("the source and destination are behind different portals: no single copy manager \
                                is known to reach both"
                        .into());
                }
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
                if !v.same_portal && dt.remote_tokens < 6 {
                    return Err("the source and destination are behind different portals and the destination \
                                does not accept tokens of other targets"
                        .into());
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
    /// Both are iSCSI LUNs reached through the same portal address.
    pub same_portal: bool,
}

/// `auto` did not use an offload it considered: which, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fallback {
    pub from: &'static str,
    pub reason: String,
}

/// The chosen engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub method: Method,
    pub fallback: Option<Fallback>,
}

/// Choose the engine. An explicit method that cannot run is an error that
/// says why; `auto` takes the best engine that can, and records a fallback
/// only when an offload was possible but not taken.
pub fn select(
    arg: MethodArg,
    v: &OffloadView,
    built: impl Fn(Method) -> Result<(), String>,
) -> Result<Selection, String> {
    let explicit = |m: Method| -> Result<Selection, String> {
        m.possible(v).map_err(|why| format!("--method {}: {why}", m.name()))?;
        built(m).map_err(|why| format!("--method {}: {why}", m.name()))?;
        Ok(Selection { method: m, fallback: None })
    };
    match arg {
        MethodArg::Host => Ok(Selection { method: Method::Host, fallback: None }),
        MethodArg::Xcopy => explicit(Method::Xcopy),
        MethodArg::Token => explicit(Method::Token),
        MethodArg::Auto => {
            let mut fallback = None;
            for m in [Method::Token, Method::Xcopy] {
                if m.possible(v).is_err() {
                    continue;
                }
                match built(m) {
                    Ok(()) => return Ok(Selection { method: m, fallback }),
                    Err(why) => {
                        fallback.get_or_insert(Fallback { from: m.name(), reason: why });
                    }
                }
            }
            Ok(Selection { method: Method::Host, fallback })
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

    fn view(src: Option<OffloadCaps>, dst: Option<OffloadCaps>, same_portal: bool) -> OffloadView {
        OffloadView { src, dst, same_portal }
    }

    fn all_built(_: Method) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn host_always_works() {
        for v in [view(None, None, false), view(Some(token_caps()), Some(token_caps()), true)] {
            let s = select(MethodArg::Host, &v, Method::built).unwrap();
            assert_eq!(s, Selection { method: Method::Host, fallback: None });
        }
    }

    #[test]
    fn auto_without_offload_is_a_silent_host_copy() {
        for v in [
            view(None, None, false),
            view(None, Some(token_caps()), false),
            view(Some(OffloadCaps::default()), Some(OffloadCaps::default()), true),
            // Offload on both, but behind different portals: nothing is possible.
            view(Some(xcopy_caps()), Some(xcopy_caps()), false),
        ] {
            let s = select(MethodArg::Auto, &v, Method::built).unwrap();
            assert_eq!(s, Selection { method: Method::Host, fallback: None }, "{v:?}");
        }
    }

    #[test]
    fn auto_says_why_it_fell_back_when_offload_was_possible() {
        let v = view(Some(xcopy_caps()), Some(xcopy_caps()), true);
        let s = select(MethodArg::Auto, &v, Method::built).unwrap();
        assert_eq!(s.method, Method::Host);
        let f = s.fallback.unwrap();
        assert_eq!(f.from, "xcopy");
        assert!(f.reason.contains("not supported by this build"), "{}", f.reason);
        // Tokens possible too: the token fallback is reported first.
        let v = view(Some(token_caps()), Some(token_caps()), true);
        let s = select(MethodArg::Auto, &v, Method::built).unwrap();
        assert_eq!(s.fallback.unwrap().from, "token");
    }

    #[test]
    fn auto_prefers_tokens_then_xcopy_once_built() {
        let v = view(Some(token_caps()), Some(token_caps()), true);
        assert_eq!(select(MethodArg::Auto, &v, all_built).unwrap().method, Method::Token);
        let v = view(Some(xcopy_caps()), Some(xcopy_caps()), true);
        assert_eq!(
            select(MethodArg::Auto, &v, all_built).unwrap(),
            Selection { method: Method::Xcopy, fallback: None }
        );
        // Only xcopy built: token possible but skipped, recorded as the fallback.
        let only_xcopy = |m: Method| if m == Method::Token { Err("no tokens".to_string()) } else { Ok(()) };
        let v = view(Some(token_caps()), Some(token_caps()), true);
        let s = select(MethodArg::Auto, &v, only_xcopy).unwrap();
        assert_eq!(s.method, Method::Xcopy);
        assert_eq!(s.fallback.unwrap().from, "token");
    }

    #[test]
    fn explicit_methods_fail_with_a_reason() {
        let local = view(None, None, false);
        let e = select(MethodArg::Xcopy, &local, all_built).unwrap_err();
        assert!(e.starts_with("--method xcopy: EXTENDED COPY needs an iSCSI source"), "{e}");
        let e = select(MethodArg::Token, &local, all_built).unwrap_err();
        assert!(e.contains("needs an iSCSI source"), "{e}");
        let v = view(Some(token_caps()), Some(token_caps()), true);
        let e = select(MethodArg::Xcopy, &v, Method::built).unwrap_err();
        assert_eq!(e, "--method xcopy: EXTENDED COPY is not supported by this build of oxcopy yet");
        let e = select(MethodArg::Token, &v, Method::built).unwrap_err();
        assert_eq!(e, "--method token: token copy is not supported by this build of oxcopy yet");
        // Devices without offload.
        let none = view(Some(OffloadCaps::default()), Some(OffloadCaps::default()), true);
        assert!(select(MethodArg::Xcopy, &none, all_built).unwrap_err().contains("neither LUN advertises"));
        assert!(select(MethodArg::Token, &none, all_built).unwrap_err().contains("cannot create ROD tokens"));
        // Token types that do not match.
        let mut dst = token_caps();
        dst.token.as_mut().unwrap().rod_types =
            vec![RodTypeCap { rod_type: 0xffff_0001, token_in: true, token_out: false }];
        let v = view(Some(token_caps()), Some(dst), true);
        assert!(select(MethodArg::Token, &v, all_built).unwrap_err().contains("accepts none"));
        // Remote tokens across portals.
        let v = view(Some(token_caps()), Some(token_caps()), false);
        assert!(select(MethodArg::Token, &v, all_built).unwrap_err().contains("different portals"));
        let mut dst = token_caps();
        dst.token.as_mut().unwrap().remote_tokens = 6;
        let v = view(Some(token_caps()), Some(dst), false);
        assert_eq!(select(MethodArg::Token, &v, all_built).unwrap().method, Method::Token);
        assert!(select(MethodArg::Xcopy, &v, all_built).unwrap_err().contains("different portals"));
    }
}
