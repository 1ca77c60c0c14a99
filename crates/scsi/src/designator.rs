//! VPD 83h designator header fields (SPC-4 §7.8.6): protocol identifier,
//! code set, PIV, association and designator type.

/// PROTOCOL IDENTIFIER iSCSI (5h) in the high nibble of byte 0.
pub(crate) const PROTO_ISCSI: u8 = 0x50;
/// CODE SET binary.
pub(crate) const CODE_SET_BINARY: u8 = 0x01;
/// CODE SET UTF-8.
pub(crate) const CODE_SET_UTF8: u8 = 0x03;
/// PIV: the protocol identifier field is valid.
pub(crate) const PIV: u8 = 0x80;
/// ASSOCIATION: the logical unit.
pub(crate) const ASSOC_LU: u8 = 0x00;
/// ASSOCIATION: the target port.
pub(crate) const ASSOC_PORT: u8 = 0x10;
/// ASSOCIATION: the target device.
pub(crate) const ASSOC_TARGET: u8 = 0x20;
/// DESIGNATOR TYPE NAA.
pub(crate) const TYPE_NAA: u8 = 0x03;
/// DESIGNATOR TYPE relative target port identifier.
pub(crate) const TYPE_RELATIVE_PORT: u8 = 0x04;
/// DESIGNATOR TYPE SCSI name string.
pub(crate) const TYPE_SCSI_NAME: u8 = 0x08;
