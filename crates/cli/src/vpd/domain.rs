//! The oxcopy copy domain page (C0h, vendor specific): which copy domain
//! the node serving the LUN belongs to, and what it knows of the other
//! nodes. The layout is the wire layer's ([`CopyDomainPage`]); this module
//! turns it into the `inspect --json` schema and the "Copy domain" text
//! section.

use super::hex;
use crate::human;
use oxcopy_scsi::wire::vpd::{CopyDomainPage, CopyDomainPageError};
use serde::Serialize;

/// VPD C0h, decoded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CopyDomain {
    /// DOMAIN FINGERPRINT (hex): equal on every node sharing the key.
    pub fingerprint: String,
    /// The copy-manager id of the node serving this LUN (hex).
    pub copy_manager_id: String,
    /// Where this node serves the node link (`null`: it serves none, it
    /// only pulls from others).
    pub listen: Option<String>,
    /// Tokens made by other nodes of the domain are accepted here.
    pub remote_tokens: bool,
    pub nodes: Vec<DomainNode>,
}

/// One node of the domain, as the serving node sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DomainNode {
    pub address: String,
    /// `unknown`, `up`, `down`, `self` (or `reserved (NNh)`).
    pub state: String,
    /// Its copy-manager id (hex), `null` while not known.
    pub copy_manager_id: Option<String>,
    /// Seconds since the state was last established.
    pub seconds: u32,
}

/// Decode VPD C0h (header included).
pub fn decode_copy_domain(d: &[u8]) -> Result<CopyDomain, CopyDomainPageError> {
    Ok(from_page(&CopyDomainPage::decode(d)?))
}

/// The JSON view of a decoded page.
pub fn from_page(p: &CopyDomainPage) -> CopyDomain {
    CopyDomain {
        fingerprint: hex(&p.fingerprint),
        copy_manager_id: hex(&p.manager_id),
        listen: (!p.listen.is_empty()).then(|| p.listen.clone()),
        remote_tokens: p.remote_tokens,
        nodes: p
            .nodes
            .iter()
            .map(|n| DomainNode {
                address: n.address.clone(),
                state: match n.state.name() {
                    "reserved" => format!("reserved ({:02X}h)", n.state.0),
                    name => name.to_string(),
                },
                copy_manager_id: n.manager_id.map(|id| hex(&id)),
                seconds: n.seconds,
            })
            .collect(),
    }
}

impl CopyDomain {
    /// One line for the head of `inspect`: `3 nodes (1 up, 1 down), fingerprint …`.
    pub fn summary(&self) -> String {
        let others: Vec<&DomainNode> = self.nodes.iter().filter(|n| n.state != "self").collect();
        let count = |s: &str| others.iter().filter(|n| n.state == s).count();
        let tokens = if self.remote_tokens { "remote tokens accepted" } else { "no remote tokens" };
        format!(
            "{} other node{} ({} up, {} down), {tokens}, fingerprint {}",
            others.len(),
            if others.len() == 1 { "" } else { "s" },
            count("up"),
            count("down"),
            self.fingerprint
        )
    }

    /// The "Copy domain" text section, every line indented by `indent`.
    pub fn render(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&pad);
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("fingerprint: {}", self.fingerprint));
        line(format!("copy manager id: {}", self.copy_manager_id));
        line(format!(
            "node link listen: {}",
            self.listen.as_deref().unwrap_or("none (this node pulls from others, serves none)")
        ));
        line(format!(
            "remote tokens: {}",
            if self.remote_tokens { "accepted" } else { "not accepted (no other nodes)" }
        ));
        if self.nodes.is_empty() {
            line("nodes: none".into());
            return out;
        }
        line("nodes:".into());
        let aw = self.nodes.iter().map(|n| n.address.len()).max().unwrap_or(0);
        let sw = self.nodes.iter().map(|n| n.state.len()).max().unwrap_or(0);
        for n in &self.nodes {
            let id = n.copy_manager_id.as_deref().unwrap_or("-");
            let since = human::duration(u64::from(n.seconds));
            line(format!("  {:aw$}  {:sw$}  {:32}  for {since}", n.address, n.state, id));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcopy_scsi::wire::vpd::{DomainNode as WireNode, NodeState};

    fn page() -> CopyDomainPage {
        CopyDomainPage {
            fingerprint: [0xDE, 0xAD, 0xBE, 0xEF, 0, 1, 2, 3],
            manager_id: [0x11; 16],
            remote_tokens: true,
            listen: "10.0.0.1:3270".into(),
            nodes: vec![
                WireNode {
                    address: "10.0.0.1:3270".into(),
                    manager_id: Some([0x11; 16]),
                    state: NodeState::SELF,
                    seconds: 90,
                },
                WireNode {
                    address: "10.0.0.2:3270".into(),
                    manager_id: Some([0x22; 16]),
                    state: NodeState::UP,
                    seconds: 200,
                },
                WireNode { address: "[fd00::3]:3270".into(), manager_id: None, state: NodeState::DOWN, seconds: 7 },
                WireNode { address: "10.0.0.4:3270".into(), manager_id: None, state: NodeState(9), seconds: 0 },
            ],
        }
    }

    #[test]
    fn renders_the_copy_domain_section() {
        let d = decode_copy_domain(&page().encode(0)).unwrap();
        let text = d.render(2);
        let ones = "11".repeat(16);
        let twos = "22".repeat(16);
        let want = format!(
            "  fingerprint: deadbeef00010203
  copy manager id: {ones}
  node link listen: 10.0.0.1:3270
  remote tokens: accepted
  nodes:
    10.0.0.1:3270   self            {ones}  for 1 min 30 s
    10.0.0.2:3270   up              {twos}  for 3 min 20 s
    [fd00::3]:3270  down            -                                 for 7 s
    10.0.0.4:3270   reserved (09h)  -                                 for 0 s
"
        );
        assert_eq!(text, want);
        assert_eq!(d.summary(), "3 other nodes (1 up, 1 down), remote tokens accepted, fingerprint deadbeef00010203");
    }

    #[test]
    fn json_schema_and_a_lone_node() {
        let v = serde_json::to_value(decode_copy_domain(&page().encode(0)).unwrap()).unwrap();
        assert_eq!(v["fingerprint"], "deadbeef00010203");
        assert_eq!(v["remote_tokens"], true);
        assert_eq!(
            v["nodes"][1],
            serde_json::json!({
                "address": "10.0.0.2:3270", "state": "up", "copy_manager_id": "22".repeat(16), "seconds": 200
            })
        );
        assert_eq!(v["nodes"][2]["copy_manager_id"], serde_json::Value::Null);
        // A node alone, serving no node link.
        let alone = CopyDomainPage { fingerprint: [1; 8], ..CopyDomainPage::default() };
        let d = decode_copy_domain(&alone.encode(0)).unwrap();
        assert_eq!(d.listen, None);
        let text = d.render(0);
        assert!(text.contains("node link listen: none (this node pulls from others, serves none)\n"), "{text}");
        assert!(text.contains("remote tokens: not accepted (no other nodes)\nnodes: none\n"), "{text}");
        // A page cut short is an error, never a panic.
        let b = page().encode(0);
        assert!((0..b.len()).all(|n| decode_copy_domain(&b[..n]).is_err()));
    }
}
