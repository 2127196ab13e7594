//! RFC 8785 (JSON Canonicalization Scheme) as a serde serializer that writes
//! straight to its output — a SHA-256 hasher, or a buffer — with no
//! `serde_json::Value` tree in between.
//!
//! What the scheme asks, and how it is met here:
//! - object members sorted by their names' UTF-16 code units: the members
//!   of each object are written to one buffer, their spans sorted, then
//!   copied out in order (only objects buffer; arrays and scalars stream);
//! - numbers as ECMAScript prints them: every number is a double, so an
//!   integer beyond 2^53 prints as the double it rounds to, and floats go
//!   through `ryu-js` (ECMAScript's shortest round-trip form); NaN and the
//!   infinities print `null`, as `serde_json::to_value` turns them, so
//!   hashes equal those of the reference path over a `Value`;
//! - strings with the escapes `JSON.stringify` uses: `\b \t \n \f \r \" \\`,
//!   other controls below U+0020 as `\u00xx`, everything else as is.
//!
//! `serde_json_canonicalizer` is the reference; the tests compare the two
//! byte for byte over generated values.

use std::io::{self, Write};

use serde::ser::{self, Impossible, Serialize};

/// Why canonical serialization failed.
#[derive(Debug)]
pub(crate) struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error(error.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, Error>;

/// Writes the canonical form of `value` to `out`.
pub(crate) fn write<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> Result {
    value.serialize(Canonical { out })
}

/// The largest integer a double holds exactly: up to it, an integer prints
/// as its decimal digits; beyond it, as the double it rounds to.
const SAFE: u64 = 1 << 53;

fn write_f64<W: Write>(out: &mut W, value: f64) -> Result {
    if value.is_finite() {
        out.write_all(ryu_js::Buffer::new().format_finite(value).as_bytes())?;
    } else {
        out.write_all(b"null")?;
    }
    Ok(())
}

fn write_u64<W: Write>(out: &mut W, value: u64) -> Result {
    if value <= SAFE {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        out.write_all(&digits[at..])?;
        Ok(())
    } else {
        write_f64(out, value as f64)
    }
}

fn write_i64<W: Write>(out: &mut W, value: i64) -> Result {
    if value < 0 && value.unsigned_abs() <= SAFE {
        out.write_all(b"-")?;
        write_u64(out, value.unsigned_abs())
    } else if value < 0 {
        write_f64(out, value as f64)
    } else {
        write_u64(out, value.unsigned_abs())
    }
}

/// Whether any of the eight bytes of `word` is a control character, a
/// quote or a backslash. Exact: the usual bit tricks for "a byte below n"
/// and "a zero byte" never miss one, and bytes from 0x80 never match.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    (below(word, 0x20) | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))) != 0
}

fn write_str<W: Write>(out: &mut W, text: &str) -> Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.write_all(b"\"")?;
    let bytes = text.as_bytes();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        // Eight bytes at a time while none needs an escape (most text).
        if let Some(word) = bytes.get(at..at + 8).and_then(|chunk| <[u8; 8]>::try_from(chunk).ok())
            && !needs_escape(u64::from_le_bytes(word))
        {
            at += 8;
            continue;
        }
        let byte = bytes[at];
        at += 1;
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => &[b'\\', b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]],
            _ => continue,
        };
        out.write_all(&bytes[start..at - 1])?;
        out.write_all(escape)?;
        start = at;
    }
    out.write_all(&bytes[start..])?;
    out.write_all(b"\"")?;
    Ok(())
}

/// The serializer: each value writes itself to `out`.
struct Canonical<'a, W> {
    out: &'a mut W,
}

impl<'a, W: Write> ser::Serializer for Canonical<'a, W> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a, W>;
    type SerializeTuple = Array<'a, W>;
    type SerializeTupleStruct = Array<'a, W>;
    type SerializeTupleVariant = Wrapped<Array<'a, W>>;
    type SerializeMap = Object<'a, W>;
    type SerializeStruct = Object<'a, W>;
    type SerializeStructVariant = Wrapped<Object<'a, W>>;

    fn serialize_bool(self, value: bool) -> Result {
        Ok(self.out.write_all(if value { b"true" } else { b"false" })?)
    }

    fn serialize_i8(self, value: i8) -> Result {
        write_i64(self.out, value.into())
    }

    fn serialize_i16(self, value: i16) -> Result {
        write_i64(self.out, value.into())
    }

    fn serialize_i32(self, value: i32) -> Result {
        write_i64(self.out, value.into())
    }

    fn serialize_i64(self, value: i64) -> Result {
        write_i64(self.out, value)
    }

    fn serialize_i128(self, value: i128) -> Result {
        match i64::try_from(value) {
            Ok(value) => write_i64(self.out, value),
            Err(_) => write_f64(self.out, value as f64),
        }
    }

    fn serialize_u8(self, value: u8) -> Result {
        write_u64(self.out, value.into())
    }

    fn serialize_u16(self, value: u16) -> Result {
        write_u64(self.out, value.into())
    }

    fn serialize_u32(self, value: u32) -> Result {
        write_u64(self.out, value.into())
    }

    fn serialize_u64(self, value: u64) -> Result {
        write_u64(self.out, value)
    }

    fn serialize_u128(self, value: u128) -> Result {
        match u64::try_from(value) {
            Ok(value) => write_u64(self.out, value),
            Err(_) => write_f64(self.out, value as f64),
        }
    }

    fn serialize_f32(self, value: f32) -> Result {
        write_f64(self.out, value.into())
    }

    fn serialize_f64(self, value: f64) -> Result {
        write_f64(self.out, value)
    }

    fn serialize_char(self, value: char) -> Result {
        write_str(self.out, value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, value: &str) -> Result {
        write_str(self.out, value)
    }

    fn serialize_bytes(self, value: &[u8]) -> Result {
        // As serde_json: an array of numbers.
        let mut array = self.serialize_seq(Some(value.len()))?;
        for byte in value {
            ser::SerializeSeq::serialize_element(&mut array, byte)?;
        }
        ser::SerializeSeq::end(array)
    }

    fn serialize_none(self) -> Result {
        Ok(self.out.write_all(b"null")?)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result {
        self.serialize_none()
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        write_str(self.out, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        // `{"variant": value}`: one member, already in order.
        self.out.write_all(b"{")?;
        write_str(self.out, variant)?;
        self.out.write_all(b":")?;
        value.serialize(Canonical { out: &mut *self.out })?;
        Ok(self.out.write_all(b"}")?)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a, W>> {
        self.out.write_all(b"[")?;
        Ok(Array { out: self.out, first: true })
    }

    fn serialize_tuple(self, len: usize) -> Result<Array<'a, W>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a, W>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Wrapped<Array<'a, W>>> {
        self.out.write_all(b"{")?;
        write_str(self.out, variant)?;
        self.out.write_all(b":")?;
        Ok(Wrapped(self.serialize_seq(Some(len))?))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a, W>> {
        let Spare { buffer, names, members } = Spare::take();
        Ok(Object { out: self.out, buffer, names, members, key: None })
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a, W>> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Wrapped<Object<'a, W>>> {
        self.out.write_all(b"{")?;
        write_str(self.out, variant)?;
        self.out.write_all(b":")?;
        Ok(Wrapped(self.serialize_map(Some(len))?))
    }
}

/// An array being written: elements stream to the output.
struct Array<'a, W> {
    out: &'a mut W,
    first: bool,
}

impl<'a, W: Write> Array<'a, W> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_all(b",")?;
        }
        value.serialize(Canonical { out: &mut *self.out })
    }

    fn finish(self) -> Result<&'a mut W> {
        self.out.write_all(b"]")?;
        Ok(self.out)
    }
}

impl<W: Write> ser::SerializeSeq for Array<'_, W> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    fn end(self) -> Result {
        self.finish().map(drop)
    }
}

impl<W: Write> ser::SerializeTuple for Array<'_, W> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    fn end(self) -> Result {
        self.finish().map(drop)
    }
}

impl<W: Write> ser::SerializeTupleStruct for Array<'_, W> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    fn end(self) -> Result {
        self.finish().map(drop)
    }
}

/// One member of an object being written: where its name is in the
/// object's name buffer, and where its `"name":value` bytes are in the
/// object's member buffer.
struct Member {
    name: std::ops::Range<usize>,
    span: std::ops::Range<usize>,
}

/// The buffers of a finished object, kept for the next object this thread
/// writes: a record's hash writes a dozen or so objects, each of which
/// would otherwise allocate three buffers and grow them as it fills.
#[derive(Default)]
struct Spare {
    buffer: Vec<u8>,
    names: String,
    members: Vec<Member>,
}

thread_local! {
    static SPARES: std::cell::RefCell<Vec<Spare>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Spare {
    /// At most this many kept per thread (objects nested this deep at once
    /// take fresh buffers), ...
    const KEPT: usize = 16;
    /// ... and none whose buffer grew past this (a large payload's object
    /// gives its memory back).
    const LARGEST: usize = 64 * 1024;

    fn take() -> Spare {
        SPARES.try_with(|spares| spares.borrow_mut().pop()).ok().flatten().unwrap_or_default()
    }

    fn keep(mut self) {
        if self.buffer.capacity() > Self::LARGEST || self.names.capacity() > Self::LARGEST {
            return;
        }
        self.buffer.clear();
        self.names.clear();
        self.members.clear();
        let _ = SPARES.try_with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < Self::KEPT {
                spares.push(self);
            }
        });
    }
}

/// An object being written: members go to a buffer, and are copied to the
/// output in canonical order when the object ends. Names are kept, unescaped,
/// in one buffer of their own (no allocation per name).
struct Object<'a, W> {
    out: &'a mut W,
    buffer: Vec<u8>,
    names: String,
    members: Vec<Member>,
    /// The name given by `serialize_key`, awaiting its value.
    key: Option<std::ops::Range<usize>>,
}

/// RFC 8785 orders names by UTF-16 code units. UTF-8 bytes order the same
/// way unless characters from U+E000 up meet characters beyond U+FFFF, so
/// names in ASCII (nearly all) are compared as bytes.
fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

impl<'a, W: Write> Object<'a, W> {
    fn name(&mut self, name: &str) -> std::ops::Range<usize> {
        let start = self.names.len();
        self.names.push_str(name);
        start..self.names.len()
    }

    fn member<T: Serialize + ?Sized>(&mut self, name: std::ops::Range<usize>, value: &T) -> Result {
        let start = self.buffer.len();
        write_str(&mut self.buffer, &self.names[name.clone()])?;
        self.buffer.push(b':');
        value.serialize(Canonical { out: &mut self.buffer })?;
        self.members.push(Member { name, span: start..self.buffer.len() });
        Ok(())
    }

    fn finish(mut self) -> Result<&'a mut W> {
        let names = &self.names;
        let order = |a: &Member, b: &Member| name_order(&names[a.name.clone()], &names[b.name.clone()]);
        if !self.members.is_sorted_by(|a, b| order(a, b).is_lt()) {
            self.members.sort_by(order);
            if let Some(pair) = self.members.windows(2).find(|pair| order(&pair[0], &pair[1]).is_eq()) {
                let name = &names[pair[0].name.clone()];
                return Err(Error(format!("duplicate object member {name:?}")));
            }
        }
        self.out.write_all(b"{")?;
        for (index, member) in self.members.iter().enumerate() {
            if index > 0 {
                self.out.write_all(b",")?;
            }
            self.out.write_all(&self.buffer[member.span.clone()])?;
        }
        self.out.write_all(b"}")?;
        let (buffer, names, members) = (self.buffer, self.names, self.members);
        Spare { buffer, names, members }.keep();
        Ok(self.out)
    }
}

impl<W: Write> ser::SerializeMap for Object<'_, W> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        let start = self.names.len();
        key.serialize(MemberName(&mut self.names))?;
        self.key = Some(start..self.names.len());
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        let name = self.key.take().ok_or_else(|| Error("a map value without its key".into()))?;
        self.member(name, value)
    }

    fn end(self) -> Result {
        self.finish().map(drop)
    }
}

impl<W: Write> ser::SerializeStruct for Object<'_, W> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result {
        let name = self.name(name);
        self.member(name, value)
    }

    fn end(self) -> Result {
        self.finish().map(drop)
    }
}

/// A compound value inside `{"variant": …}`: closes the brace after it.
struct Wrapped<T>(T);

impl<W: Write> ser::SerializeTupleVariant for Wrapped<Array<'_, W>> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.0.element(value)
    }

    fn end(self) -> Result {
        Ok(self.0.finish()?.write_all(b"}")?)
    }
}

impl<W: Write> ser::SerializeStructVariant for Wrapped<Object<'_, W>> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result {
        let name = self.0.name(name);
        self.0.member(name, value)
    }

    fn end(self) -> Result {
        Ok(self.0.finish()?.write_all(b"}")?)
    }
}

/// An object member's name, from a map key: strings as they are, and, as
/// serde_json allows, integers, booleans and unit variants as their text.
struct MemberName<'a>(&'a mut String);

impl MemberName<'_> {
    fn refuse<T>(what: &str) -> Result<T> {
        Err(Error(format!("an object member's name cannot be {what}")))
    }

    fn text(self, text: impl std::fmt::Display) -> Result {
        std::fmt::Write::write_fmt(self.0, format_args!("{text}")).map_err(|e| Error(e.to_string()))
    }
}

impl ser::Serializer for MemberName<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, value: bool) -> Result {
        self.text(value)
    }
    fn serialize_i8(self, value: i8) -> Result {
        self.text(value)
    }
    fn serialize_i16(self, value: i16) -> Result {
        self.text(value)
    }
    fn serialize_i32(self, value: i32) -> Result {
        self.text(value)
    }
    fn serialize_i64(self, value: i64) -> Result {
        self.text(value)
    }
    fn serialize_i128(self, value: i128) -> Result {
        self.text(value)
    }
    fn serialize_u8(self, value: u8) -> Result {
        self.text(value)
    }
    fn serialize_u16(self, value: u16) -> Result {
        self.text(value)
    }
    fn serialize_u32(self, value: u32) -> Result {
        self.text(value)
    }
    fn serialize_u64(self, value: u64) -> Result {
        self.text(value)
    }
    fn serialize_u128(self, value: u128) -> Result {
        self.text(value)
    }
    fn serialize_f32(self, _: f32) -> Result {
        Self::refuse("a float")
    }
    fn serialize_f64(self, _: f64) -> Result {
        Self::refuse("a float")
    }
    fn serialize_char(self, value: char) -> Result {
        self.text(value)
    }
    fn serialize_str(self, value: &str) -> Result {
        self.0.push_str(value);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result {
        Self::refuse("bytes")
    }
    fn serialize_none(self) -> Result {
        Self::refuse("null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        Self::refuse("null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        Self::refuse("null")
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Self::refuse("a variant with data")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Self::refuse("an array")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Self::refuse("an array")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct> {
        Self::refuse("an array")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Self::refuse("an array")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        Self::refuse("an object")
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        Self::refuse("an object")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Self::refuse("an object")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_test_finds_every_byte_that_needs_an_escape_at_every_position() {
        for byte in 0..=255u8 {
            let expected = byte < 0x20 || byte == b'"' || byte == b'\\';
            for position in 0..8 {
                let mut word = [b'a'; 8];
                word[position] = byte;
                assert_eq!(needs_escape(u64::from_le_bytes(word)), expected, "{byte:#x} at {position}");
                // Next to bytes that borrow in the subtraction.
                let mut word = [0x80; 8];
                word[position] = byte;
                assert_eq!(needs_escape(u64::from_le_bytes(word)), expected, "{byte:#x} at {position} among 0x80");
            }
        }
    }

    #[test]
    fn strings_escape_alike_wherever_the_character_falls() {
        for c in (0..0x80u8).map(char::from).chain(['é', '漢', '😀', '\u{7f}']) {
            for position in 0..20 {
                let mut text: String = "a".repeat(position);
                text.push(c);
                text.push_str(&"b".repeat(19 - position));
                let mut ours = Vec::new();
                write_str(&mut ours, &text).expect("a Vec takes every write");
                let reference = serde_json_canonicalizer::to_vec(&serde_json::Value::String(text.clone()))
                    .expect("a string always canonicalizes");
                assert_eq!(ours, reference, "{text:?}");
            }
        }
    }
}
