//! A thin layer over [`tpm::codec::Reader`] that names the field being read, so that a short
//! or out-of-range field becomes [`Error::Malformed`] with its offset.

use tpm::codec::Reader;

use crate::Error;

pub(crate) struct Fields<'a> {
    r: Reader<'a>,
    input: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8], input: &'static str) -> Self {
        Fields {
            r: Reader::new(buf),
            input,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.r.position()
    }

    /// An error about the field starting at `offset`.
    pub(crate) fn error_at(&self, offset: usize, what: impl Into<String>) -> Error {
        Error::Malformed {
            input: self.input,
            offset,
            what: what.into(),
        }
    }

    fn short(&self, offset: usize, field: &str, need: usize) -> Error {
        self.error_at(
            offset,
            format!("{field}: needs {need} bytes, {} left", self.r.remaining()),
        )
    }

    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], Error> {
        let at = self.position();
        self.r.take(n).map_err(|_| self.short(at, field, n))
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, Error> {
        let at = self.position();
        self.r.u8().map_err(|_| self.short(at, field, 1))
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, Error> {
        let at = self.position();
        self.r.u16().map_err(|_| self.short(at, field, 2))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, Error> {
        let at = self.position();
        self.r.u32().map_err(|_| self.short(at, field, 4))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, Error> {
        let at = self.position();
        self.r.u64().map_err(|_| self.short(at, field, 8))
    }

    /// A TPM2B: a big-endian u16 size (at most `cap`) and that many bytes.
    pub(crate) fn sized(&mut self, cap: usize, field: &str) -> Result<&'a [u8], Error> {
        let at = self.position();
        let size = usize::from(self.u16(field)?);
        if size > cap {
            return Err(self.error_at(
                at,
                format!("{field}: size {size} exceeds the maximum {cap}"),
            ));
        }
        self.r
            .take(size)
            .map_err(|_| self.short(at + 2, field, size))
    }

    /// Fail if anything is left after the structure.
    pub(crate) fn end(&self, structure: &str) -> Result<(), Error> {
        if self.r.is_empty() {
            Ok(())
        } else {
            Err(self.error_at(
                self.position(),
                format!(
                    "{} trailing bytes after the {structure}",
                    self.r.remaining()
                ),
            ))
        }
    }
}
