//! Big-endian TPM wire codec (Part 1, 18.2): a non-panicking borrowed `Reader`, and one
//! `Marshal`/`Unmarshal` trait pair that every TPM structure implements. Every length
//! prefix is checked against an explicit cap before anything is read.

use crate::rc::Rc;

/// A cursor over untrusted bytes. Reads never panic; running short yields TPM_RC_INSUFFICIENT.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Take the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Rc> {
        let end = self.pos.checked_add(n).ok_or(Rc::INSUFFICIENT)?;
        let out = self.buf.get(self.pos..end).ok_or(Rc::INSUFFICIENT)?;
        self.pos = end;
        Ok(out)
    }

    /// Take everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }

    pub fn u8(&mut self) -> Result<u8, Rc> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Rc> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Rc> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Rc> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Rc> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A TPM2B: a u16 size then that many bytes; a size above `cap` is TPM_RC_SIZE.
    pub fn sized(&mut self, cap: usize) -> Result<&'a [u8], Rc> {
        let size = usize::from(self.u16()?);
        if size > cap {
            return Err(Rc::SIZE);
        }
        self.take(size)
    }
}

/// Writes a value in TPM wire format.
pub trait Marshal {
    fn marshal(&self, out: &mut Vec<u8>);

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.marshal(&mut out);
        out
    }
}

/// Reads a value in TPM wire format, validating it as the spec's unmarshal functions do.
pub trait Unmarshal: Sized {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc>;

    /// Unmarshal from a whole buffer; trailing bytes are TPM_RC_SIZE.
    fn from_bytes(buf: &[u8]) -> Result<Self, Rc> {
        let mut r = Reader::new(buf);
        let v = Self::unmarshal(&mut r)?;
        if r.is_empty() {
            Ok(v)
        } else {
            Err(Rc::SIZE)
        }
    }
}

impl Marshal for u8 {
    fn marshal(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}
impl Unmarshal for u8 {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        r.u8()
    }
}
impl Marshal for u16 {
    fn marshal(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}
impl Unmarshal for u16 {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        r.u16()
    }
}
impl Marshal for u32 {
    fn marshal(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}
impl Unmarshal for u32 {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        r.u32()
    }
}
impl Marshal for u64 {
    fn marshal(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}
impl Unmarshal for u64 {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        r.u64()
    }
}

/// Write a TPM2B (u16 size + bytes). Callers keep `bytes` within the type's cap.
pub fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    len.marshal(out);
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
}

/// Declares a TPM2B type: a byte buffer with a u16 size prefix and a maximum size.
macro_rules! tpm2b {
    ($(#[$m:meta])* $name:ident, $cap:expr) => {
        $(#[$m])*
        #[derive(Clone, Default, PartialEq, Eq, Debug)]
        pub struct $name(pub Vec<u8>);

        impl $name {
            /// The largest buffer this type holds.
            pub const CAP: usize = $cap;

            pub fn as_slice(&self) -> &[u8] {
                &self.0
            }

            pub fn len(&self) -> usize {
                self.0.len()
            }

            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl $crate::codec::Marshal for $name {
            fn marshal(&self, out: &mut Vec<u8>) {
                $crate::codec::put_sized(out, &self.0);
            }
        }

        impl $crate::codec::Unmarshal for $name {
            fn unmarshal(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::rc::Rc> {
                Ok($name(r.sized(Self::CAP)?.to_vec()))
            }
        }
    };
}
pub(crate) use tpm2b;

/// Declares a structure marshalled as its fields in order (Part 2 "TPMS_" structures).
macro_rules! tpm_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Debug)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl $crate::codec::Marshal for $name {
            fn marshal(&self, out: &mut Vec<u8>) {
                $( $crate::codec::Marshal::marshal(&self.$field, out); )*
            }
        }

        impl $crate::codec::Unmarshal for $name {
            fn unmarshal(r: &mut $crate::codec::Reader<'_>) -> Result<Self, $crate::rc::Rc> {
                Ok($name { $($field: <$ty as $crate::codec::Unmarshal>::unmarshal(r)?),* })
            }
        }
    };
}
pub(crate) use tpm_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[0x12, 0x34, 0x56]);
        assert_eq!(r.u16(), Ok(0x1234));
        assert_eq!(r.u16(), Err(Rc::INSUFFICIENT));
        assert_eq!(r.u8(), Ok(0x56));
        assert_eq!(r.u8(), Err(Rc::INSUFFICIENT));
        assert_eq!(r.take(usize::MAX), Err(Rc::INSUFFICIENT));
    }

    #[test]
    fn sized_enforces_its_cap() {
        let mut r = Reader::new(&[0x00, 0x03, 1, 2, 3]);
        assert_eq!(r.clone().sized(2), Err(Rc::SIZE));
        assert_eq!(r.sized(3), Ok(&[1u8, 2, 3][..]));
    }
}
