//! A fast path for reading results files, the dominant cost of a whole evaluation.
//!
//! It handles the shape every detector writes (an array of flat objects with plain keys) and
//! splits the array between threads. It never decides anything on its own: on any input it is
//! not sure about (escaped keys, duplicate or missing fields, non-integer ids, numbers out of
//! range, malformed JSON...) it returns `None` and the caller parses with serde, which then
//! gives the same values or the precise error. Numbers are parsed with `str::parse::<f64>`,
//! correctly rounded like serde_json's `float_roundtrip` and Python's `json`.

use rayon::prelude::*;

use crate::results::Detection;

/// Below this size one thread does it all.
const PARALLEL_MIN_BYTES: usize = 1 << 20;

/// Parses a whole results file, or `None` to ask for the serde path.
pub(crate) fn scan_results(bytes: &[u8]) -> Option<Vec<Detection>> {
    let mut s = Scanner { b: bytes, i: 0 };
    s.ws();
    s.expect(b'[')?;
    s.ws();
    if s.peek()? == b']' {
        s.i += 1;
        s.ws();
        return (s.i == bytes.len()).then(Vec::new);
    }
    let body = s.i;
    let chunks = if bytes.len() >= PARALLEL_MIN_BYTES { rayon::current_num_threads().clamp(1, 64) } else { 1 };
    // Guessed record starts; each chunk must end exactly where the next one starts, which
    // proves the guess was a real record boundary (chunk 0 starts at a known one).
    let mut starts = vec![body];
    for j in 1..chunks {
        let from = body + (bytes.len() - body) * j / chunks;
        match guess_record_start(bytes, from.max(*starts.last()? + 1)) {
            Some(p) if p > *starts.last()? => starts.push(p),
            _ => break,
        }
    }
    let limits: Vec<usize> = starts.iter().skip(1).copied().chain([usize::MAX]).collect();
    let parts: Vec<Option<Vec<Detection>>> = starts
        .par_iter()
        .zip(limits.par_iter())
        .map(|(&start, &limit)| {
            let mut s = Scanner { b: bytes, i: start };
            s.records(limit, (limit.min(bytes.len()) - start) / 64)
        })
        .collect();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.as_ref().map_or(0, Vec::len)).sum());
    for part in parts {
        out.extend(part?);
    }
    Some(out)
}

/// Clinger's fast path: a decimal with at most 15 significant digits and a small power of ten
/// is one exactly representable integer times or over an exact power of ten, so a single
/// correctly rounded operation gives the correctly rounded value. `None` for everything else
/// (and for integers, whose conversion follows serde_json's integer rules instead).
fn fast_decimal(tok: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];
    let (neg, digits) = match tok.first()? {
        b'-' => (true, &tok[1..]),
        _ => (false, tok),
    };
    let mut mantissa: u64 = 0;
    let (mut n_digits, mut frac_digits, mut seen_dot) = (0u32, 0i32, false);
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                if mantissa != 0 || c != b'0' {
                    n_digits += 1;
                }
                mantissa = mantissa * 10 + (c - b'0') as u64;
                if seen_dot {
                    frac_digits += 1;
                }
                if n_digits > 15 {
                    return None;
                }
            }
            b'.' => seen_dot = true,
            _ => return None, // exponent: leave to the general parser
        }
    }
    if !seen_dot || frac_digits > 22 {
        return None;
    }
    let v = mantissa as f64 / POW10[frac_digits as usize];
    Some(if neg { -v } else { v })
}

/// The first `{` at or after `from` that follows a `,` (whitespace aside): a record start
/// unless it is inside a string or a nested value, which the chunk before will disprove.
fn guess_record_start(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        if b[i] == b'{' {
            let mut j = i;
            while j > 0 && matches!(b[j - 1], b' ' | b'\n' | b'\r' | b'\t') {
                j -= 1;
            }
            if j > 0 && b[j - 1] == b',' {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Records from here until the position `limit` (where the next chunk starts) or, for the
    /// last chunk, the closing `]` and the end of the input.
    fn records(&mut self, limit: usize, capacity: usize) -> Option<Vec<Detection>> {
        let mut out = Vec::with_capacity(capacity);
        loop {
            if self.i >= limit {
                return (self.i == limit).then_some(out);
            }
            out.push(self.record()?);
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    self.ws();
                    return (limit == usize::MAX && self.i == self.b.len()).then_some(out);
                }
                _ => return None,
            }
        }
    }

    fn record(&mut self) -> Option<Detection> {
        self.expect(b'{')?;
        let (mut image_id, mut category_id, mut bbox, mut score) = (None, None, None, None);
        loop {
            self.ws();
            let key = self.plain_string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            // A repeated known field is an error for serde: leave it to serde.
            match key {
                b"image_id" if image_id.is_none() => image_id = Some(self.int()?),
                b"category_id" if category_id.is_none() => category_id = Some(self.int()?),
                b"score" if score.is_none() => score = Some(self.float()?),
                b"bbox" if bbox.is_none() => bbox = Some(self.bbox()?),
                b"image_id" | b"category_id" | b"score" | b"bbox" => return None,
                _ => self.skip_value(0)?,
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        Some(Detection { image_id: image_id?, category_id: category_id?, bbox: bbox?, score: score? })
    }

    /// A string without escapes, as raw bytes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let (b, start) = (self.b, self.i);
        while let Some(&c) = b.get(self.i) {
            match c {
                b'"' => {
                    self.i += 1;
                    return Some(&b[start..self.i - 1]);
                }
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        None
    }

    /// A JSON number token; `(token, is_integer)`.
    fn number(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integer = false;
            self.digits1()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits1()?;
        }
        let b = self.b;
        Some((&b[start..self.i], integer))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn digits1(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// An id: an integer token that fits an i64 (serde rejects `1.0` for an i64 field).
    fn int(&mut self) -> Option<i64> {
        let (tok, integer) = self.number()?;
        if !integer {
            return None;
        }
        // The token is ASCII digits with an optional sign, so this is valid UTF-8.
        std::str::from_utf8(tok).ok()?.parse::<i64>().ok()
    }

    /// A float field, converted as serde_json does: integers via i64/u64, others correctly rounded.
    fn float(&mut self) -> Option<f64> {
        let (tok, integer) = self.number()?;
        let text = std::str::from_utf8(tok).ok()?;
        if let Some(v) = fast_decimal(tok) {
            return Some(v);
        }
        let v = if integer {
            if tok[0] == b'-' {
                // serde_json reads "-0" as the integer 0: leave such oddities to it.
                let v = text.parse::<i64>().ok()?;
                if v == 0 {
                    return None;
                }
                v as f64
            } else {
                text.parse::<u64>().ok()? as f64
            }
        } else {
            text.parse::<f64>().ok()?
        };
        v.is_finite().then_some(v)
    }

    fn bbox(&mut self) -> Option<[f64; 4]> {
        self.expect(b'[')?;
        let mut out = [0.0; 4];
        for (j, v) in out.iter_mut().enumerate() {
            self.ws();
            *v = self.float()?;
            self.ws();
            self.expect(if j == 3 { b']' } else { b',' })?;
        }
        Some(out)
    }

    /// Skips any JSON value, strictly enough that whatever passes here serde accepts too.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > 64 {
            return None;
        }
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip_string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                let (tok, integer) = self.number()?;
                // serde_json rejects floats out of range even in ignored values.
                (integer || std::str::from_utf8(tok).ok()?.parse::<f64>().ok()?.is_finite()).then_some(())
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.b.get(self.i..self.i + word.len())? == word).then(|| self.i += word.len())
    }

    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    std::str::from_utf8(&self.b[start..self.i]).ok()?;
                    self.i += 1;
                    return Some(());
                }
                b'\\' => match self.b.get(self.i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    b'u' => {
                        let hex = self.b.get(self.i + 2..self.i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 6;
                    }
                    _ => return None,
                },
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{self, Locator, Records};

    fn serde_parse(bytes: &[u8]) -> Option<Vec<Detection>> {
        let loc = Locator::default();
        json::parse_slice(bytes, Records::new(&loc, "results"), &loc, "t").ok()
    }

    #[test]
    fn fast_decimal_is_correctly_rounded() {
        for s in
            ["0.1", "123.45", "-0.5", "0.8999999999999", "5e-1", "1", "0.30000000000000004", "-0.0", "99999999999999.9"]
        {
            if let Some(v) = fast_decimal(s.as_bytes()) {
                assert_eq!(v.to_bits(), s.parse::<f64>().unwrap().to_bits(), "{s}");
            }
        }
        assert_eq!(fast_decimal(b"0.30000000000000004"), None);
        assert_eq!(fast_decimal(b"12"), None);
    }

    #[test]
    fn agrees_with_serde_or_defers() {
        let cases: &[&str] = &[
            r#"[{"image_id": 1, "category_id": 2, "bbox": [1.5, 2, 3e1, 4E-1], "score": 0.8999999999999999}]"#,
            r#" [ {"score":1,"bbox":[0,0,-1,5],"category_id":-3,"image_id":42,"segmentation":{"counts":"a\"b\\c\u00e9","size":[1,2]},"extra":[true,false,null,{}]} ] "#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 12345678901234567890}]"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 0.1, "x": "é"}, {"image_id": 3, "category_id": 4, "bbox": [0.30000000000000004,0,1,1], "score": 1e-5}]"#,
            "[]",
            // Left to serde: escaped key, duplicate field, float id, -0, missing field, trailing comma, NaN, huge exponent, garbage after.
            r#"[{"image\u005fid": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 0.1}]"#,
            r#"[{"image_id": 1, "image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 0.1}]"#,
            r#"[{"image_id": 1.0, "category_id": 2, "bbox": [0,0,1,1], "score": 0.1}]"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": -0}]"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1]}]"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 0.1},]"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": NaN}]"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 1e400}]"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1,1], "score": 0.1}] x"#,
            r#"[{"image_id": 1, "category_id": 2, "bbox": [0,0,1], "score": 0.1}]"#,
            r#"[{"image_id": 01, "category_id": 2, "bbox": [0,0,1,1], "score": 0.1}]"#,
        ];
        for (i, c) in cases.iter().enumerate() {
            let fast = scan_results(c.as_bytes());
            let slow = serde_parse(c.as_bytes());
            if i < 5 {
                assert!(fast.is_some(), "fast path should take case {i}");
            }
            if let Some(fast) = fast {
                assert_eq!(Some(fast), slow, "case {i}");
            }
        }
    }

    #[test]
    fn parallel_split_matches_serde_and_survives_decoy_braces() {
        // Strings holding ",{" decoys near every split point force the chunk check to work.
        let mut text = String::from("[");
        for i in 0..40_000 {
            if i > 0 {
                text.push_str(",\n ");
            }
            let decoy = if i % 3 == 0 { r#", "note": ",{\"image_id\": 5, ,{""# } else { "" };
            text.push_str(&format!(
                r#"{{"image_id": {}, "category_id": {}, "bbox": [{}.25, 1.5, 30.125, 4e1], "score": 0.{}{}}}"#,
                i % 500,
                i % 80,
                i,
                (i * 7919) % 1000,
                decoy
            ));
        }
        text.push(']');
        assert!(text.len() > PARALLEL_MIN_BYTES);
        let fast = scan_results(text.as_bytes()).expect("fast path");
        assert_eq!(Some(fast), serde_parse(text.as_bytes()));
    }
}
