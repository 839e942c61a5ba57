//! Nameko's url rules (werkzeug syntax) and how a request path is matched against one.
//!
//! A rule such as `/get/<int:value>` is parsed once, when a service declares it, into literal
//! segments and typed variables. Every shape that cannot work is refused then, with a
//! [`RuleError`] naming the rule, so nothing about a rule can fail or panic while serving.
//!
//! Each rule also renders a [routefinder] spec (`/get/:value`, a `path` variable as the
//! terminal `*`) that the router uses as an index to find candidate rules. The index is never
//! the last word: routefinder lets a literal match a prefix of a segment (`/get/:value` matches
//! `/get42`), reads `:` and `*` inside literals as patterns, lets `*` match nothing, and
//! mistakes byte offsets for character offsets after a literal that is not ASCII. So a literal
//! that is not ASCII or contains `:`, `*`, `.` or `%` is indexed as a plain parameter, and every
//! candidate is confirmed by [`Rule::match_segments`], which compares whole decoded segments and runs the
//! converters. A value that does not convert means the rule does not match.
//!
//! Request paths are read this way, and documented here because werkzeug differs in places:
//!
//! - Segments are split on `/` before decoding; empty segments are dropped, so leading,
//!   trailing and repeated slashes do not matter (`/get/42/` and `/get//42` match
//!   `/get/<int:value>`, and the rule `/items/` matches `/items`). Werkzeug redirects instead.
//! - Each segment is then percent-decoded; a segment that is not UTF-8 once decoded matches
//!   nothing (404). An encoded slash (`%2F`) stays inside its segment: it never splits a path.
//!   A `%` not followed by two hex digits is kept as it is.
//! - Literal segments compare with the decoded request segment, so `/h%65llo` matches `/hello`.
//!
//! Converters follow werkzeug's defaults: `string` is one non-empty segment; `int` is ASCII
//! digits only, no sign, and a value beyond `i64` does not match; `float` is digits, a dot,
//! digits; `uuid` is the canonical 8-4-4-4-12 hex form (handed over lower-cased); `path` is the
//! non-empty rest of the path and must be the rule's last part; `any(a, b)` is one of its
//! choices. Converter arguments other than `any`'s choices are refused.

use std::fmt;
use std::str::FromStr;

use crate::error::RuleError;
use crate::path_values::{PathValue, PathValues};

/// How a path variable's text becomes a typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Converter {
    /// `<name>` or `<string:name>`: one non-empty segment.
    String,
    /// `<int:name>`: ASCII digits that fit an `i64`.
    Int,
    /// `<float:name>`: digits, a dot, digits.
    Float,
    /// `<path:name>`: the rest of the path.
    Path,
    /// `<uuid:name>`: a canonical UUID.
    Uuid,
    /// `<any(a, b):name>`: exactly one of the choices.
    Any(Vec<String>),
}

impl Converter {
    /// Converts one decoded segment; `None` means the rule does not match.
    fn convert(&self, segment: &str) -> Option<PathValue> {
        match self {
            Self::String => (!segment.is_empty()).then(|| PathValue::String(segment.to_owned())),
            Self::Int => {
                if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                segment.parse().ok().map(PathValue::Int)
            }
            Self::Float => {
                let (whole, fraction) = segment.split_once('.')?;
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if !digits(whole) || !digits(fraction) {
                    return None;
                }
                // Hundreds of digits overflow to infinity, which JSON cannot carry.
                let value: f64 = segment.parse().ok()?;
                value.is_finite().then_some(PathValue::Float(value))
            }
            Self::Uuid => {
                is_canonical_uuid(segment).then(|| PathValue::Uuid(segment.to_ascii_lowercase()))
            }
            Self::Any(choices) => choices
                .iter()
                .any(|c| c == segment)
                .then(|| PathValue::String(segment.to_owned())),
            Self::Path => (!segment.is_empty()).then(|| PathValue::Path(segment.to_owned())),
        }
    }

    /// Precedence between rules that match the same segment: lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Self::Any(_) => 1,
            Self::Int | Self::Float | Self::Uuid => 2,
            Self::String => 3,
            Self::Path => 4,
        }
    }
}

impl fmt::Display for Converter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String => f.write_str("string"),
            Self::Int => f.write_str("int"),
            Self::Float => f.write_str("float"),
            Self::Path => f.write_str("path"),
            Self::Uuid => f.write_str("uuid"),
            Self::Any(choices) => write!(f, "any({})", choices.join(", ")),
        }
    }
}

fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// One segment of a parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable { name: String, converter: Converter },
}

/// A parsed url rule.
///
/// Two rules have the same *shape* when they differ only in variable names; the router groups
/// the methods of one shape together and treats an overlap as a clash.
#[derive(Debug, Clone)]
pub struct Rule {
    source: String,
    parts: Vec<Part>,
    spec: routefinder::RouteSpec,
}

impl Rule {
    /// Parses a werkzeug rule such as `/get/<int:value>`.
    pub fn parse(rule: &str) -> Result<Self, RuleError> {
        let Some(body) = rule.strip_prefix('/') else {
            return Err(RuleError::NoLeadingSlash {
                rule: rule.to_owned(),
            });
        };
        let mut parts = Vec::new();
        for segment in body.split('/').filter(|s| !s.is_empty()) {
            let part = parse_segment(rule, segment)?;
            if let Part::Variable { name, .. } = &part {
                let seen = parts
                    .iter()
                    .any(|p| matches!(p, Part::Variable { name: n, .. } if n == name));
                if seen {
                    return Err(RuleError::DuplicateName {
                        rule: rule.to_owned(),
                        name: name.clone(),
                    });
                }
            }
            if let Some(Part::Variable {
                name,
                converter: Converter::Path,
            }) = parts.last()
            {
                return Err(RuleError::PathNotLast {
                    rule: rule.to_owned(),
                    name: name.clone(),
                });
            }
            parts.push(part);
        }
        let spec = index_spec(&parts);
        // The spec is built from validated parts only (`:identifier`, a terminal `*`, literals
        // free of routefinder's special characters), which routefinder always accepts.
        let spec = spec.parse().map_err(|_| RuleError::Malformed {
            rule: rule.to_owned(),
            part: spec,
            expected: "a shape the route index accepts",
        })?;
        Ok(Self {
            source: rule.to_owned(),
            parts,
            spec,
        })
    }

    /// The rule as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The routefinder spec indexing this rule, such as `/get/:value`.
    pub fn spec(&self) -> String {
        self.spec.to_string()
    }

    pub(crate) fn route_spec(&self) -> &routefinder::RouteSpec {
        &self.spec
    }

    /// The variables, in order, with their converters.
    pub fn variables(&self) -> impl Iterator<Item = (&str, &Converter)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable { name, converter } => Some((name.as_str(), converter)),
            Part::Literal(_) => None,
        })
    }

    /// Whether two rules match exactly the same paths with the same converters.
    pub fn same_shape(&self, other: &Rule) -> bool {
        self.parts.len() == other.parts.len()
            && self.parts.iter().zip(&other.parts).all(|pair| match pair {
                (Part::Literal(a), Part::Literal(b)) => a == b,
                (Part::Variable { converter: a, .. }, Part::Variable { converter: b, .. }) => {
                    a == b
                }
                _ => false,
            })
    }

    /// Matches a raw request path (without the query), decoding it as the module doc says.
    pub fn match_path(&self, path: &str) -> Option<PathValues> {
        let segments = decode_path(path)?;
        let values = self.match_segments(&segments)?;
        Some(self.name_values(values))
    }

    /// Matches decoded segments and converts the variables, in order.
    pub(crate) fn match_segments(&self, segments: &[String]) -> Option<Vec<PathValue>> {
        let mut values = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(literal) => {
                    if segments.get(i)? != literal {
                        return None;
                    }
                }
                Part::Variable {
                    converter: Converter::Path,
                    ..
                } => {
                    // Parsing guarantees `path` is the last part.
                    let rest = segments.get(i..)?.join("/");
                    values.push(Converter::Path.convert(&rest)?);
                    return Some(values);
                }
                Part::Variable { converter, .. } => {
                    values.push(converter.convert(segments.get(i)?)?);
                }
            }
        }
        (segments.len() == self.parts.len()).then_some(values)
    }

    /// Labels values produced by a rule of the same shape with this rule's names.
    pub(crate) fn name_values(&self, values: Vec<PathValue>) -> PathValues {
        self.variables()
            .map(|(name, _)| name.to_owned())
            .zip(values)
            .collect()
    }

    /// Per-segment specificity, compared lexicographically: literal, `any`, typed, `string`,
    /// `path`. The router tries more specific rules first.
    pub(crate) fn rank(&self) -> impl Iterator<Item = u8> + '_ {
        self.parts.iter().map(|p| match p {
            Part::Literal(_) => 0,
            Part::Variable { converter, .. } => converter.rank(),
        })
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_segment(rule: &str, segment: &str) -> Result<Part, RuleError> {
    let malformed = |expected| RuleError::Malformed {
        rule: rule.to_owned(),
        part: segment.to_owned(),
        expected,
    };
    let opens = segment.matches('<').count();
    let closes = segment.matches('>').count();
    if opens == 0 && closes == 0 {
        return Ok(Part::Literal(segment.to_owned()));
    }
    if opens != 1 || closes != 1 || segment.find('<') > segment.find('>') {
        return Err(malformed("one `<converter:name>` per segment"));
    }
    let Some(inner) = segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
        return Err(RuleError::PartialSegment {
            rule: rule.to_owned(),
            segment: segment.to_owned(),
        });
    };
    let (converter, arguments, name) = match inner.rsplit_once(':') {
        None => ("string", None, inner),
        Some((head, name)) => match head.split_once('(') {
            None => (head, None, name),
            Some((converter, rest)) => match rest.strip_suffix(')') {
                Some(arguments) => (converter, Some(arguments), name),
                None => return Err(malformed("`converter(arguments):name`")),
            },
        },
    };
    if !is_identifier(name) {
        return Err(RuleError::InvalidName {
            rule: rule.to_owned(),
            name: name.to_owned(),
        });
    }
    let no_arguments = |converter: Converter| match arguments {
        Some(a) if !a.trim().is_empty() => Err(RuleError::UnsupportedArguments {
            rule: rule.to_owned(),
            converter: converter.to_string(),
            arguments: a.to_owned(),
        }),
        _ => Ok(converter),
    };
    let converter = match converter {
        "string" | "default" => no_arguments(Converter::String)?,
        "int" => no_arguments(Converter::Int)?,
        "float" => no_arguments(Converter::Float)?,
        "path" => no_arguments(Converter::Path)?,
        "uuid" => no_arguments(Converter::Uuid)?,
        "any" => Converter::Any(
            parse_choices(arguments.unwrap_or_default())
                .ok_or_else(|| malformed("`any(choice, ...)` with non-empty choices"))?,
        ),
        other => {
            return Err(RuleError::UnknownConverter {
                rule: rule.to_owned(),
                converter: other.to_owned(),
            });
        }
    };
    Ok(Part::Variable {
        name: name.to_owned(),
        converter,
    })
}

/// `a, b, "c"` into its choices; quotes are optional, as in werkzeug's Python-literal syntax.
fn parse_choices(arguments: &str) -> Option<Vec<String>> {
    arguments
        .split(',')
        .map(|choice| {
            let choice = choice.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| choice.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(choice);
            (!unquoted.is_empty() && !unquoted.contains(['/', '"', '\'']))
                .then(|| unquoted.to_owned())
        })
        .collect()
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The routefinder spec for validated parts. A literal routefinder would misread (`:` and `*`
/// start patterns, `.` splits segments, `%` differs after decoding) becomes a parameter, which
/// only widens the candidate set; [`Rule::match_segments`] has the last word. So does a
/// literal that is not ASCII: routefinder 0.6 mixes byte and character offsets while parsing a
/// spec, loses the `/` after such a literal, and then panics matching a request.
fn index_spec(parts: &[Part]) -> String {
    let mut spec = String::new();
    for (i, part) in parts.iter().enumerate() {
        spec.push('/');
        match part {
            Part::Literal(l) if l.is_ascii() && !l.contains([':', '*', '.', '%']) => {
                spec.push_str(l)
            }
            Part::Literal(_) => {
                spec.push_str(":_");
                spec.push_str(&i.to_string());
            }
            Part::Variable {
                converter: Converter::Path,
                ..
            } => spec.push('*'),
            Part::Variable { name, .. } => {
                spec.push(':');
                spec.push_str(name);
            }
        }
    }
    if spec.is_empty() {
        spec.push('/');
    }
    spec
}

/// Splits a raw request path into decoded segments; `None` when one is not UTF-8, or when the
/// request target is not a path at all (`OPTIONS *`, `CONNECT host:port`).
pub(crate) fn decode_path(path: &str) -> Option<Vec<String>> {
    if !path.starts_with('/') {
        return None;
    }
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// The index form of decoded segments: joined by `/`, with slashes inside a segment escaped so
/// that routefinder sees the same segment boundaries as [`Rule::match_segments`].
pub(crate) fn index_path(segments: &[String]) -> String {
    let mut path = String::from("/");
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(&segment.replace('/', "%2F"));
    }
    path
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    String::from_utf8(percent_decode_bytes(s)).ok()
}

/// Decodes `%XX` escapes to bytes; a `%` without two hex digits stays, as werkzeug leaves it.
pub(crate) fn percent_decode_bytes(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        Rule::parse(s).unwrap()
    }

    fn matched(rule_text: &str, path: &str) -> Option<PathValues> {
        rule(rule_text).match_path(path)
    }

    #[test]
    fn parses_into_spec_and_ordered_converters() {
        let r = rule("/get/<int:value>/<name>/<any(a, 'b', \"c\"):pick>/<path:rest>");
        assert_eq!(r.spec(), "/get/:value/:name/:pick/*");
        let vars: Vec<_> = r.variables().map(|(n, c)| (n, c.clone())).collect();
        assert_eq!(
            vars,
            [
                ("value", Converter::Int),
                ("name", Converter::String),
                (
                    "pick",
                    Converter::Any(vec!["a".into(), "b".into(), "c".into()])
                ),
                ("rest", Converter::Path),
            ]
        );
        assert_eq!(
            r.as_str(),
            "/get/<int:value>/<name>/<any(a, 'b', \"c\"):pick>/<path:rest>"
        );
        assert_eq!(rule("/").spec(), "/");
        assert_eq!(rule("/<string:s>/<default:d>").spec(), "/:s/:d");
        assert_eq!(rule("/a/<uuid:u>/<float:f>").spec(), "/a/:u/:f");
    }

    #[test]
    fn literals_routefinder_would_misread_are_indexed_as_parameters() {
        let r = rule("/v1.0/:x/*/50%/<int:id>");
        assert_eq!(r.spec(), "/:_0/:_1/:_2/:_3/:id");
        let values = r.match_path("/v1.0/:x/*/50%25/7").unwrap();
        assert_eq!(values.get_int("id"), Some(7));
        assert!(r.match_path("/v1x0/:x/*/50%25/7").is_none());
        assert!(r.match_path("/v1.0/y/*/50%25/7").is_none());
    }

    #[test]
    fn refuses_rules_that_cannot_work() {
        let err = |s: &str| Rule::parse(s).unwrap_err();
        assert!(matches!(err("get"), RuleError::NoLeadingSlash { .. }));
        assert!(matches!(err("/<path:p>/x"), RuleError::PathNotLast { name, .. } if name == "p"));
        assert!(matches!(
            err("/<path:p>/<int:i>"),
            RuleError::PathNotLast { .. }
        ));
        assert!(
            matches!(err("/<x>/<int:x>"), RuleError::DuplicateName { name, .. } if name == "x")
        );
        assert!(
            matches!(err("/<foo:x>"), RuleError::UnknownConverter { converter, .. } if converter == "foo")
        );
        assert!(matches!(
            err("/<int(min=1):x>"),
            RuleError::UnsupportedArguments { .. }
        ));
        assert!(matches!(
            err("/item-<int:id>"),
            RuleError::PartialSegment { .. }
        ));
        assert!(matches!(err("/<a>.<b>"), RuleError::Malformed { .. }));
        assert!(matches!(err("/<int:id"), RuleError::Malformed { .. }));
        assert!(matches!(err("/int:id>"), RuleError::Malformed { .. }));
        assert!(matches!(err("/>x<"), RuleError::Malformed { .. }));
        assert!(matches!(err("/<any:x>"), RuleError::Malformed { .. }));
        assert!(matches!(err("/<any():x>"), RuleError::Malformed { .. }));
        assert!(matches!(err("/<any(a,,b):x>"), RuleError::Malformed { .. }));
        assert!(matches!(err("/<any(a:x>"), RuleError::Malformed { .. }));
        assert!(matches!(err("/<int:>"), RuleError::InvalidName { .. }));
        assert!(matches!(err("/<>"), RuleError::InvalidName { .. }));
        assert!(matches!(err("/<int:1x>"), RuleError::InvalidName { .. }));
        assert!(matches!(err("/<int:a-b>"), RuleError::InvalidName { .. }));
        assert_eq!(
            err("/<path:p>/x").to_string(),
            "invalid url rule `/<path:p>/x`: the `path` variable `p` must be the last part of the rule"
        );
        assert_eq!(
            err("/<foo:x>").to_string(),
            "invalid url rule `/<foo:x>`: unknown converter `foo`: expected one of `string`, `int`, `float`, `path`, `uuid`, `any(..)`"
        );
        // Empty parentheses are no arguments at all.
        assert!(Rule::parse("/<int():x>").is_ok());
    }

    #[test]
    fn int_is_ascii_digits_within_i64() {
        assert_eq!(
            matched("/get/<int:v>", "/get/42").unwrap().get_int("v"),
            Some(42)
        );
        assert_eq!(
            matched("/get/<int:v>", "/get/007").unwrap().get_int("v"),
            Some(7)
        );
        let max = i64::MAX.to_string();
        assert!(matched("/get/<int:v>", &format!("/get/{max}")).is_some());
        assert!(matched("/get/<int:v>", "/get/9223372036854775808").is_none());
        for bad in ["-1", "+1", "1.5", "x", "٣", "1e3", "%20"] {
            assert!(
                matched("/get/<int:v>", &format!("/get/{bad}")).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn float_needs_digits_on_both_sides_of_a_dot() {
        assert_eq!(
            matched("/f/<float:f>", "/f/1.5").unwrap().get_float("f"),
            Some(1.5)
        );
        for bad in ["1", "1.", ".5", "-1.5", "1.5e3", "a.b", "1.2.3"] {
            assert!(
                matched("/f/<float:f>", &format!("/f/{bad}")).is_none(),
                "{bad}"
            );
        }
        let huge = format!("/f/{}.0", "9".repeat(400));
        assert!(matched("/f/<float:f>", &huge).is_none());
    }

    #[test]
    fn uuid_is_canonical_and_lower_cased() {
        let values = matched("/u/<uuid:u>", "/u/123E4567-E89B-12D3-A456-426614174000").unwrap();
        assert_eq!(
            values.get_uuid("u"),
            Some("123e4567-e89b-12d3-a456-426614174000")
        );
        for bad in [
            "123e4567e89b12d3a456426614174000",
            "123e4567-e89b-12d3-a456-42661417400",
            "123e4567-e89b-12d3-a456-42661417400g",
            "{123e4567-e89b-12d3-a456-426614174000}",
        ] {
            assert!(
                matched("/u/<uuid:u>", &format!("/u/{bad}")).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn string_is_one_segment_and_path_is_the_rest() {
        assert_eq!(
            matched("/s/<s>", "/s/hello").unwrap().get_str("s"),
            Some("hello")
        );
        assert!(matched("/s/<s>", "/s/a/b").is_none());
        assert!(matched("/s/<s>", "/s").is_none());
        assert!(matched("/s/<s>", "/s/").is_none());
        let values = matched("/files/<path:p>", "/files/a/b/c.txt").unwrap();
        assert_eq!(values.get_path("p"), Some("a/b/c.txt"));
        assert!(matched("/files/<path:p>", "/files").is_none());
        assert!(matched("/files/<path:p>", "/files/").is_none());
        assert!(matched("/files/<path:p>", "/other/a").is_none());
    }

    #[test]
    fn any_is_one_of_its_choices() {
        let r = rule("/pages/<any(about, help):page>");
        assert_eq!(
            r.match_path("/pages/help").unwrap().get_str("page"),
            Some("help")
        );
        assert!(r.match_path("/pages/imprint").is_none());
        assert!(r.match_path("/pages/Help").is_none());
    }

    #[test]
    fn literals_match_whole_segments_only() {
        // routefinder alone would match `/get42` against `/get/:value`.
        assert!(
            rule("/get/<int:v>")
                .route_spec()
                .matches("/get42")
                .is_some()
        );
        assert!(matched("/get/<int:v>", "/get42").is_none());
        assert!(matched("/get/<int:v>", "/getx/42").is_none());
        assert!(matched("/a/b", "/ab").is_none());
        assert!(matched("/a/b", "/a/b/c").is_none());
        assert!(matched("/a/b/c", "/a/b").is_none());
        assert!(matched("/", "/").is_some());
        assert!(matched("/", "/x").is_none());
        assert!(matched("/", "").is_none());
        assert!(matched("/<name>", "*").is_none());
    }

    #[test]
    fn slashes_are_lenient() {
        assert!(matched("/get/<int:v>", "/get/42/").is_some());
        assert!(matched("/get/<int:v>", "//get//42").is_some());
        assert!(matched("/items/", "/items").is_some());
        assert!(matched("/items", "/items/").is_some());
        assert_eq!(
            matched("/files/<path:p>", "/files/a//b/")
                .unwrap()
                .get_path("p"),
            Some("a/b")
        );
    }

    #[test]
    fn segments_are_percent_decoded_after_splitting() {
        assert_eq!(
            matched("/s/<s>", "/s/caf%C3%A9%20au%20lait")
                .unwrap()
                .get_str("s"),
            Some("café au lait")
        );
        assert_eq!(
            matched("/s/<s>", "/s/a%2Fb").unwrap().get_str("s"),
            Some("a/b")
        );
        assert!(matched("/h/hello", "/h/h%65llo").is_some());
        assert!(matched("/s/<s>", "/s/%FF").is_none());
        assert_eq!(
            matched("/s/<s>", "/s/100%").unwrap().get_str("s"),
            Some("100%")
        );
        assert_eq!(
            matched("/s/<s>", "/s/%zz").unwrap().get_str("s"),
            Some("%zz")
        );
        assert_eq!(
            matched("/get/<int:v>", "/get/%34%32").unwrap().get_int("v"),
            Some(42)
        );
    }

    #[test]
    fn shape_ignores_names_only() {
        assert!(rule("/get/<int:a>").same_shape(&rule("/get/<int:b>/")));
        assert!(!rule("/get/<int:a>").same_shape(&rule("/get/<a>")));
        assert!(!rule("/get/<int:a>").same_shape(&rule("/got/<int:a>")));
        assert!(!rule("/get").same_shape(&rule("/get/<int:a>")));
    }

    #[test]
    fn index_path_keeps_segment_boundaries() {
        let segments = decode_path("/a/x%2Fy/c").unwrap();
        assert_eq!(segments, ["a", "x/y", "c"]);
        assert_eq!(index_path(&segments), "/a/x%2Fy/c");
        assert_eq!(index_path(&[]), "/");
    }
}
