//! Negotiated session/connection parameters (RFC 7143 §13), the result of login.

/// Normal or discovery session (`SessionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionType {
    #[default]
    Normal,
    Discovery,
}

/// Everything login settled that the full-feature phase needs. Values are
/// the *negotiated* ones (RFC 7143 defaults where a key was not exchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// `None` for discovery sessions.
    pub target_name: Option<String>,
    pub target_portal_group_tag: u16,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub header_digest: bool,
    pub data_digest: bool,
    /// The largest data segment the *initiator* accepts (it declared this):
    /// the target must not send longer Data-In/Text/Login segments.
    pub initiator_max_recv_data_segment_length: u32,
    /// The largest data segment the *target* accepts (it declared this):
    /// the initiator must not send longer Data-Out/immediate segments.
    pub target_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_connections: u16,
}

impl Default for SessionParams {
    /// RFC 7143 defaults for every negotiable key.
    fn default() -> Self {
        SessionParams {
            session_type: SessionType::Normal,
            initiator_name: String::new(),
            initiator_alias: None,
            target_name: None,
            target_portal_group_tag: 1,
            isid: [0; 6],
            tsih: 0,
            header_digest: false,
            data_digest: false,
            initiator_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            default_time2wait: 2,
            default_time2retain: 20,
            max_connections: 1,
        }
    }
}
