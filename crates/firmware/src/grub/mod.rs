//! Debian's signed grub as the virtual firmware runs it: the configuration and prefix
//! embedded in the image ([`image`]), its script language and what it measures
//! ([`script`]).

pub mod image;
pub mod script;

/// The grub device of the node's boot disk partition: one disk, an MBR with the ESP as its
/// first partition, as a Generation 2 node's OS disk (and QEMU's vvfat disk) present it.
pub const BOOT_DEVICE: &str = "hd0,msdos1";
