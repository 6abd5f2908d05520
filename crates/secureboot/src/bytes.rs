//! A bounds-checked little-endian reader over borrowed bytes. Every read is checked and every
//! failure carries the absolute offset; it never indexes, slices or adds unchecked.

use crate::{Error, Result};

/// The bytes `buf[offset..offset + len]`, or a truncation error naming `what`.
pub(crate) fn slice<'a>(
    buf: &'a [u8],
    offset: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8]> {
    offset
        .checked_add(len)
        .and_then(|end| buf.get(offset..end))
        .ok_or(Error::Truncated { what, offset })
}

pub(crate) fn u16_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u16> {
    let b = slice(buf, offset, 2, what)?;
    Ok(u16::from_le_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    ]))
}

pub(crate) fn u32_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u32> {
    let mut a = [0u8; 4];
    a.copy_from_slice(slice(buf, offset, 4, what)?);
    Ok(u32::from_le_bytes(a))
}

pub(crate) fn u64_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u64> {
    let mut a = [0u8; 8];
    a.copy_from_slice(slice(buf, offset, 8, what)?);
    Ok(u64::from_le_bytes(a))
}

/// `a + b`, or an error at `offset` when it overflows (lengths from untrusted headers).
pub(crate) fn add(a: usize, b: usize, what: &'static str, offset: usize) -> Result<usize> {
    a.checked_add(b)
        .ok_or(Error::malformed(what, offset, "length overflows"))
}

/// `value` rounded up to a multiple of `align` (a power of two).
pub(crate) fn align_up(
    value: usize,
    align: usize,
    what: &'static str,
    offset: usize,
) -> Result<usize> {
    let mask = align.wrapping_sub(1);
    Ok(add(value, mask, what, offset)? & !mask)
}

/// A cursor over `buf`, whose offsets are reported relative to `base` in the caller's input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize, what: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            what,
        }
    }

    /// The absolute offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let out = slice(self.buf, self.pos, len, self.what).map_err(|_| Error::Truncated {
            what: self.what,
            offset: self.offset(),
        })?;
        self.pos = self.pos.saturating_add(len);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        let off = self.pos;
        self.take(2)?;
        u16_at(self.buf, off, self.what)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let off = self.pos;
        self.take(4)?;
        u32_at(self.buf, off, self.what)
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let off = self.pos;
        self.take(8)?;
        u64_at(self.buf, off, self.what)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}
