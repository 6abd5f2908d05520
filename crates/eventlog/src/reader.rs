//! A bounds-checked cursor over borrowed bytes: every read either succeeds within the slice
//! or returns an [`Error::Parse`] carrying the offset and the event index. It never panics.

use crate::error::{Error, Problem};

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the caller's input, so errors in a sub-view report offsets in
    /// the whole log.
    base: usize,
    /// The event being read, for error messages.
    pub(crate) event: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self::at(buf, 0, 0)
    }

    pub(crate) fn at(buf: &'a [u8], base: usize, event: usize) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            event,
        }
    }

    /// Offset of the next byte in the caller's input.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn error(&self, problem: Problem) -> Error {
        Error::Parse {
            event: self.event,
            offset: self.offset(),
            problem,
        }
    }

    pub(crate) fn invalid(&self, what: &'static str, detail: &'static str) -> Error {
        self.error(Problem::Invalid { what, detail })
    }

    /// `len` bytes, or a truncation error naming `what`.
    pub(crate) fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], Error> {
        let available = self.remaining();
        let end = usize::try_from(len)
            .ok()
            .filter(|&n| n <= available)
            .and_then(|n| self.pos.checked_add(n));
        let bytes = end.and_then(|end| self.buf.get(self.pos..end));
        match (bytes, end) {
            (Some(bytes), Some(end)) => {
                self.pos = end;
                Ok(bytes)
            }
            _ => Err(self.error(Problem::Truncated {
                what,
                needed: len,
                available,
            })),
        }
    }

    /// A sub-reader over the next `len` bytes (offsets stay those of the whole input).
    pub(crate) fn sub(&mut self, len: u64, what: &'static str) -> Result<Reader<'a>, Error> {
        let base = self.offset();
        let bytes = self.take(len, what)?;
        Ok(Reader::at(bytes, base, self.event))
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length or count, refused above `cap` before anything is allocated for it.
    pub(crate) fn capped(&self, value: u64, cap: u64, what: &'static str) -> Result<u64, Error> {
        if value > cap {
            Err(self.error(Problem::TooLarge { what, value, cap }))
        } else {
            Ok(value)
        }
    }

    /// A UINTN of the platform's width (4 or 8 bytes, from the Spec ID event's uintnSize).
    pub(crate) fn uintn(&mut self, width: UintnWidth, what: &'static str) -> Result<u64, Error> {
        match width {
            UintnWidth::U32 => self.u32(what).map(u64::from),
            UintnWidth::U64 => self.u64(what),
        }
    }
}

/// Width of UINTN fields in event payloads (PFP 10.4.5.1: uintnSize 1 = UINT32, 2 = UINT64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UintnWidth {
    U32,
    #[default]
    U64,
}
