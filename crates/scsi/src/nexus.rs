//! Who is asking: the I_T nexus that travels with every command.

use std::sync::Arc;

pub use oxcopy_copy::CancelToken;

/// Identity of an I_T nexus: the initiator port (name + ISID) and the target
/// port (target name + portal group tag). Per-initiator state (reservations,
/// copy list identifiers, unit attentions) is keyed by this value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nexus {
    /// iSCSI initiator name (iqn./eui./naa.).
    pub initiator_name: Arc<str>,
    /// Initiator session identifier (6 bytes), half of the initiator port id.
    pub isid: [u8; 6],
    /// Target name the session logged into.
    pub target_name: Arc<str>,
    /// Target portal group tag (relative target port identifier).
    pub tpgt: u16,
}

impl Nexus {
    /// Initiator port name as SPC-4 TransportID / VPD 83h writes it:
    /// `<initiator name>,i,0x<isid hex>`.
    pub fn initiator_port_name(&self) -> String {
        let mut s = format!("{},i,0x", self.initiator_name);
        for b in self.isid {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}
