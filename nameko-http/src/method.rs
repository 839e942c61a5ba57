//! The methods an `http(..)` entrypoint accepts, from Nameko's method string.
//!
//! Nameko takes one string, `"GET"` or a comma-separated list such as `"GET,PUT,POST,DELETE"`.
//! Python splits it on `,` without trimming, so `"GET, POST"` silently never matches `POST`;
//! here each token is trimmed and upper-cased, and an empty or invalid token is an error at
//! declaration time instead of a route that never matches.
//!
//! Like werkzeug, a route that accepts `GET` also answers `HEAD`. That `HEAD` is *implied*: it
//! is listed in `Allow` and routed to the `GET` handler, but it never clashes with a route that
//! declares `HEAD` explicitly, which then takes precedence.

use std::fmt;
use std::str::FromStr;

use hyper::Method;

use crate::error::Error;

/// The methods of one route, as declared (sorted, without duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Methods {
    declared: Vec<Method>,
}

impl Methods {
    /// Parses Nameko's method string: one method or a comma-separated list.
    pub fn parse(methods: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidMethods {
            methods: methods.to_owned(),
            reason,
        };
        let mut declared = Vec::new();
        for token in methods.split(',') {
            let token = token.trim();
            if token.is_empty() {
                return Err(invalid(
                    "expected a method name between commas, found an empty one".to_owned(),
                ));
            }
            let method = Method::from_bytes(token.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid(format!("`{token}` is not a valid http method name")))?;
            declared.push(method);
        }
        Ok(Self::from_methods(declared))
    }

    fn from_methods(mut declared: Vec<Method>) -> Self {
        declared.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        declared.dedup();
        Self { declared }
    }

    /// The methods as declared, sorted by name.
    pub fn declared(&self) -> &[Method] {
        &self.declared
    }

    /// Whether a request with `method` may use this route, counting the `HEAD` implied by
    /// `GET`.
    pub fn allows(&self, method: &Method) -> bool {
        self.declares(method) || (*method == Method::HEAD && self.declares(&Method::GET))
    }

    /// Whether `method` is declared, not merely implied.
    pub fn declares(&self, method: &Method) -> bool {
        self.declared.contains(method)
    }

    /// The declared methods with the implied `HEAD`, sorted by name: what `Allow` lists.
    pub fn allowed(&self) -> Vec<Method> {
        let mut allowed = self.declared.clone();
        if self.declares(&Method::GET) && !self.declares(&Method::HEAD) {
            allowed.push(Method::HEAD);
            allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        }
        allowed
    }

    /// The first declared method the two have in common: two routes of one rule overlapping
    /// there is a clash.
    pub fn overlap(&self, other: &Methods) -> Option<&Method> {
        self.declared.iter().find(|m| other.declares(m))
    }
}

impl FromStr for Methods {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<Method> for Methods {
    fn from(method: Method) -> Self {
        Self::from_methods(vec![method])
    }
}

impl<const N: usize> From<[Method; N]> for Methods {
    fn from(methods: [Method; N]) -> Self {
        Self::from_methods(methods.into())
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.declared))
    }
}

/// `GET, HEAD, POST`: the form of an `Allow` header.
pub(crate) fn join(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_method_or_a_list() {
        assert_eq!(Methods::parse("GET").unwrap().declared(), [Method::GET]);
        let methods = Methods::parse("GET,PUT,POST,DELETE").unwrap();
        assert_eq!(
            methods.declared(),
            [Method::DELETE, Method::GET, Method::POST, Method::PUT]
        );
        assert_eq!(methods.to_string(), "DELETE, GET, POST, PUT");
    }

    #[test]
    fn trims_upper_cases_and_deduplicates() {
        let methods = Methods::parse(" get , Post,POST ").unwrap();
        assert_eq!(methods.declared(), [Method::GET, Method::POST]);
        let custom = Methods::parse("purge").unwrap();
        assert_eq!(custom.declared()[0].as_str(), "PURGE");
    }

    #[test]
    fn refuses_empty_and_invalid_tokens() {
        for bad in [
            "",
            " ",
            "GET,",
            ",GET",
            "GET,,POST",
            "GE T",
            "GET;POST",
            "G\"ET",
        ] {
            let err = Methods::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidMethods { .. }), "{bad}: {err}");
        }
        assert_eq!(
            Methods::parse("GET,,POST").unwrap_err().to_string(),
            "invalid http methods `GET,,POST`: expected a method name between commas, found an empty one"
        );
        assert_eq!(
            Methods::parse("GE T").unwrap_err().to_string(),
            "invalid http methods `GE T`: `GE T` is not a valid http method name"
        );
    }

    #[test]
    fn get_implies_head() {
        let get = Methods::from(Method::GET);
        assert!(get.allows(&Method::HEAD));
        assert!(!get.declares(&Method::HEAD));
        assert_eq!(get.allowed(), [Method::GET, Method::HEAD]);
        let post = Methods::from(Method::POST);
        assert!(!post.allows(&Method::HEAD));
        let both = Methods::from([Method::POST, Method::GET]);
        assert_eq!(both.allowed(), [Method::GET, Method::HEAD, Method::POST]);
    }

    #[test]
    fn overlap_counts_declared_methods_only() {
        let get = Methods::from(Method::GET);
        let head = Methods::from(Method::HEAD);
        assert_eq!(get.overlap(&head), None);
        let get_post = Methods::parse("GET,POST").unwrap();
        assert_eq!(
            get_post.overlap(&Methods::from(Method::POST)),
            Some(&Method::POST)
        );
    }
}
