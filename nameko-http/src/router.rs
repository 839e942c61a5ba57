//! The route table: which handler a method and path go to.
//!
//! Routes are grouped by rule shape (rules that differ only in variable names): one entry per
//! shape, indexed once in routefinder, holding the routes of every method declared for it. Two
//! routes of one shape that declare the same method are refused when the second is added, so
//! which handler runs is never a coin toss.
//!
//! When several shapes match a path, the most specific wins, segment by segment from the left:
//! a literal beats `any(..)`, which beats `int`, `float` and `uuid`, which beat `string`, which
//! beats `path`. So `/items/new` beats `/items/<int:id>` beats `/items/<name>` beats
//! `/items/<path:rest>`. Shapes equally specific for a path (only possible with overlapping
//! `any` choices) go to the one registered first. A rule whose converter refuses the value does
//! not match, and the next one is tried.
//!
//! A path matched by some rule, none of which accepts the method, is `405` with the union of
//! their methods; a path no rule matches is `404`. `HEAD` goes to a route declaring `HEAD`, and
//! otherwise to the `GET` route of the same shape, as werkzeug does.

use hyper::Method;

use crate::error::Error;
use crate::method::Methods;
use crate::path_values::PathValues;
use crate::rule::{self, Rule};

/// What a method and path lead to.
#[derive(Debug)]
pub enum Lookup<'a, T> {
    /// A route accepts them; here are its value and the converted path variables.
    Match(&'a T, PathValues),
    /// Some rule matches the path, but none of them accepts the method.
    MethodNotAllowed {
        /// Every method the matching rules accept, sorted by name: the `Allow` header.
        allow: Vec<Method>,
    },
    /// No rule matches the path.
    NotFound,
}

struct Route<T> {
    methods: Methods,
    rule: Rule,
    value: T,
}

/// The routes of one rule shape.
struct Entry<T> {
    rule: Rule,
    routes: Vec<Route<T>>,
}

impl<T> Entry<T> {
    fn route_for(&self, method: &Method) -> Option<&Route<T>> {
        self.routes
            .iter()
            .find(|r| r.methods.declares(method))
            .or_else(|| self.routes.iter().find(|r| r.methods.allows(method)))
    }
}

/// A route table from `(methods, rule)` to values of type `T`.
pub struct Router<T> {
    /// In registration order, which breaks ties between equally specific shapes.
    entries: Vec<Entry<T>>,
    /// Finds candidate entries by their position in `entries`.
    index: routefinder::Router<usize>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: routefinder::Router::new(),
        }
    }
}

impl<T> std::fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .flat_map(|e| e.routes.iter().map(|r| format!("{} {}", r.methods, r.rule))),
            )
            .finish()
    }
}

impl<T> Router<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one route; on a clash the table is left unchanged.
    pub fn add(&mut self, methods: Methods, rule: Rule, value: T) -> Result<(), Error> {
        self.add_all([(methods, rule, value)])
    }

    /// Adds several routes at once, all or none: a clash with the table or among the new
    /// routes leaves the table unchanged.
    pub fn add_all(
        &mut self,
        routes: impl IntoIterator<Item = (Methods, Rule, T)>,
    ) -> Result<(), Error> {
        let routes: Vec<_> = routes.into_iter().collect();
        for (i, (methods, rule, _)) in routes.iter().enumerate() {
            let existing = self
                .entries
                .iter()
                .filter(|e| e.rule.same_shape(rule))
                .flat_map(|e| e.routes.iter().map(|r| (&r.methods, &r.rule)));
            let earlier = routes[..i]
                .iter()
                .filter(|(_, r, _)| r.same_shape(rule))
                .map(|(m, r, _)| (m, r));
            for (other_methods, other_rule) in existing.chain(earlier) {
                if let Some(method) = methods.overlap(other_methods) {
                    return Err(Error::RouteClash {
                        method: method.clone(),
                        rule: rule.to_string(),
                        existing: other_rule.to_string(),
                    });
                }
            }
        }
        for (methods, rule, value) in routes {
            let route = Route {
                methods,
                rule,
                value,
            };
            match self
                .entries
                .iter_mut()
                .find(|e| e.rule.same_shape(&route.rule))
            {
                Some(entry) => entry.routes.push(route),
                None => {
                    index_entry(&mut self.index, &route.rule, self.entries.len());
                    self.entries.push(Entry {
                        rule: route.rule.clone(),
                        routes: vec![route],
                    });
                }
            }
        }
        Ok(())
    }

    /// Keeps only the routes whose value passes `keep`, as when one service leaves a shared
    /// server.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for entry in &mut self.entries {
            entry.routes.retain(|r| keep(&r.value));
        }
        self.entries.retain(|e| !e.routes.is_empty());
        self.index = routefinder::Router::new();
        for (i, entry) in self.entries.iter().enumerate() {
            index_entry(&mut self.index, &entry.rule, i);
        }
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.routes.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the route for a method and a raw request path (without the query).
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_, T> {
        let Some(segments) = rule::decode_path(path) else {
            return Lookup::NotFound;
        };
        let mut candidates: Vec<usize> = self
            .index
            .match_iter(&rule::index_path(&segments))
            .map(|m| *m.handler())
            .collect();
        candidates.sort_by(|a, b| {
            let (ra, rb) = (self.entries[*a].rule.rank(), self.entries[*b].rule.rank());
            ra.cmp(rb).then(a.cmp(b))
        });
        let mut allow = Vec::new();
        for i in candidates {
            let entry = &self.entries[i];
            let Some(values) = entry.rule.match_segments(&segments) else {
                continue;
            };
            match entry.route_for(method) {
                Some(route) => return Lookup::Match(&route.value, route.rule.name_values(values)),
                None => allow.extend(entry.routes.iter().flat_map(|r| r.methods.allowed())),
            }
        }
        if allow.is_empty() {
            return Lookup::NotFound;
        }
        allow.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allow.dedup();
        Lookup::MethodNotAllowed { allow }
    }
}

fn index_entry(index: &mut routefinder::Router<usize>, rule: &Rule, position: usize) {
    // Adding a parsed `RouteSpec` cannot fail: its conversion error type is `Infallible`.
    match index.add(rule.route_spec().clone(), position) {
        Ok(()) => {}
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str, &'static str)]) -> Router<&'static str> {
        let mut router = Router::new();
        for (methods, rule, name) in routes {
            router
                .add(methods.parse().unwrap(), rule.parse().unwrap(), *name)
                .unwrap();
        }
        router
    }

    fn found(router: &Router<&'static str>, method: Method, path: &str) -> Option<&'static str> {
        match router.lookup(&method, path) {
            Lookup::Match(name, _) => Some(*name),
            _ => None,
        }
    }

    #[test]
    fn matches_method_and_path_with_values() {
        let r = router(&[
            ("GET", "/get/<int:value>", "get"),
            ("POST", "/post", "post"),
        ]);
        match r.lookup(&Method::GET, "/get/42") {
            Lookup::Match(name, values) => {
                assert_eq!(*name, "get");
                assert_eq!(values.get_int("value"), Some(42));
            }
            other => panic!("expected a match, found {other:?}"),
        }
        assert_eq!(found(&r, Method::POST, "/post"), Some("post"));
        assert!(matches!(r.lookup(&Method::GET, "/get/x"), Lookup::NotFound));
        assert!(matches!(r.lookup(&Method::GET, "/get42"), Lookup::NotFound));
        assert!(matches!(r.lookup(&Method::GET, "/nope"), Lookup::NotFound));
        assert!(matches!(
            r.lookup(&Method::GET, "/get/%FF"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn groups_methods_of_one_shape_and_names_values_per_route() {
        let r = router(&[
            ("GET", "/items/<int:id>", "read"),
            ("PUT,DELETE", "/items/<int:item_id>", "write"),
        ]);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.len(), 2);
        assert_eq!(found(&r, Method::GET, "/items/1"), Some("read"));
        match r.lookup(&Method::DELETE, "/items/1") {
            Lookup::Match(name, values) => {
                assert_eq!(*name, "write");
                assert_eq!(values.get_int("item_id"), Some(1));
                assert_eq!(values.get("id"), None);
            }
            other => panic!("expected a match, found {other:?}"),
        }
        match r.lookup(&Method::POST, "/items/1") {
            Lookup::MethodNotAllowed { allow } => assert_eq!(
                allow,
                [Method::DELETE, Method::GET, Method::HEAD, Method::PUT]
            ),
            other => panic!("expected 405, found {other:?}"),
        }
    }

    #[test]
    fn head_goes_to_get_unless_declared() {
        let r = router(&[
            ("GET", "/a", "get-a"),
            ("GET", "/b", "get-b"),
            ("HEAD", "/b", "head-b"),
        ]);
        assert_eq!(found(&r, Method::HEAD, "/a"), Some("get-a"));
        assert_eq!(found(&r, Method::HEAD, "/b"), Some("head-b"));
        assert_eq!(found(&r, Method::GET, "/b"), Some("get-b"));
    }

    #[test]
    fn same_shape_and_method_is_a_clash() {
        let mut r = router(&[("GET,POST", "/get/<int:value>", "first")]);
        let err = r
            .add(
                "post".parse().unwrap(),
                "/get/<int:other>/".parse().unwrap(),
                "second",
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "route clash: `POST /get/<int:other>/` is already registered by `/get/<int:value>`: expected each method of a rule to be registered once"
        );
        assert_eq!(r.len(), 1);
        // A batch with an inner clash adds nothing.
        let batch = [
            (Methods::from(Method::PUT), "/x".parse().unwrap(), "x1"),
            (Methods::from(Method::PUT), "/x".parse().unwrap(), "x2"),
        ];
        assert!(matches!(r.add_all(batch), Err(Error::RouteClash { .. })));
        assert_eq!(r.len(), 1);
        assert!(matches!(r.lookup(&Method::PUT, "/x"), Lookup::NotFound));
        // Another converter is another shape, not a clash.
        r.add(
            Methods::from(Method::GET),
            "/get/<v>".parse().unwrap(),
            "string",
        )
        .unwrap();
    }

    #[test]
    fn most_specific_rule_wins_whatever_the_order() {
        let routes = [
            ("GET", "/items/<path:rest>", "path"),
            ("GET", "/items/<name>", "string"),
            ("GET", "/items/<int:id>", "int"),
            ("GET", "/items/<any(new, old):kind>", "any"),
            ("GET", "/items/new", "literal"),
        ];
        for reversed in [false, true] {
            let mut ordered = routes.to_vec();
            if reversed {
                ordered.reverse();
            }
            let r = router(&ordered);
            assert_eq!(found(&r, Method::GET, "/items/new"), Some("literal"));
            assert_eq!(found(&r, Method::GET, "/items/old"), Some("any"));
            assert_eq!(found(&r, Method::GET, "/items/7"), Some("int"));
            assert_eq!(found(&r, Method::GET, "/items/x"), Some("string"));
            assert_eq!(found(&r, Method::GET, "/items/x/y"), Some("path"));
        }
    }

    #[test]
    fn specificity_is_decided_from_the_left() {
        let r = router(&[
            ("GET", "/<a>/b", "param-first"),
            ("GET", "/a/<b>", "literal-first"),
        ]);
        assert_eq!(found(&r, Method::GET, "/a/b"), Some("literal-first"));
        assert_eq!(found(&r, Method::GET, "/z/b"), Some("param-first"));
    }

    #[test]
    fn equally_specific_rules_go_to_the_first_registered() {
        let r = router(&[
            ("GET", "/<any(a, b):x>", "first"),
            ("GET", "/<any(b, c):y>", "second"),
        ]);
        assert_eq!(found(&r, Method::GET, "/b"), Some("first"));
        assert_eq!(found(&r, Method::GET, "/c"), Some("second"));
    }

    #[test]
    fn a_method_mismatch_falls_through_to_a_less_specific_rule() {
        let r = router(&[("GET", "/x", "literal"), ("POST", "/<name>", "param")]);
        assert_eq!(found(&r, Method::POST, "/x"), Some("param"));
        match r.lookup(&Method::PUT, "/x") {
            Lookup::MethodNotAllowed { allow } => {
                assert_eq!(allow, [Method::GET, Method::HEAD, Method::POST]);
            }
            other => panic!("expected 405, found {other:?}"),
        }
    }

    #[test]
    fn literals_beyond_ascii_are_routed() {
        // Found by fuzzing: indexed as written, such a literal made routefinder panic on a
        // request for the rule (a byte offset read as a character offset).
        let router = router(&[
            ("GET", "/caf\u{e9}/<a>/b", "menu"),
            ("GET", "/\u{1f600}/<int:n>", "smile"),
        ]);
        assert_eq!(found(&router, Method::GET, "/caf\u{e9}/x/b"), Some("menu"));
        assert_eq!(found(&router, Method::GET, "/caf%C3%A9/x/b"), Some("menu"));
        assert_eq!(found(&router, Method::GET, "/\u{1f600}/7"), Some("smile"));
        assert_eq!(found(&router, Method::GET, "/cafe/x/b"), None);
        assert_eq!(found(&router, Method::GET, "/caf\u{e9}/x/c"), None);
    }

    #[test]
    fn literals_with_special_characters_are_routed() {
        let r = router(&[
            ("GET", "/v1.0/:x/*/<int:id>", "odd"),
            ("GET", "/file.txt", "file"),
        ]);
        assert_eq!(found(&r, Method::GET, "/v1.0/:x/*/3"), Some("odd"));
        assert_eq!(found(&r, Method::GET, "/file.txt"), Some("file"));
        assert_eq!(found(&r, Method::GET, "/file%2Etxt"), Some("file"));
        assert_eq!(found(&r, Method::GET, "/fileXtxt"), None);
    }

    #[test]
    fn retain_removes_routes_and_empty_entries() {
        let mut r = router(&[
            ("GET", "/a", "a"),
            ("POST", "/a", "a-post"),
            ("GET", "/b", "b"),
        ]);
        r.retain(|v| *v != "a");
        assert_eq!(r.len(), 2);
        assert!(matches!(
            r.lookup(&Method::GET, "/a"),
            Lookup::MethodNotAllowed { .. }
        ));
        assert_eq!(found(&r, Method::GET, "/b"), Some("b"));
        r.retain(|v| *v == "b");
        assert!(matches!(r.lookup(&Method::POST, "/a"), Lookup::NotFound));
        assert_eq!(found(&r, Method::GET, "/b"), Some("b"));
        r.retain(|_| false);
        assert!(r.is_empty());
    }

    #[test]
    fn root_rule() {
        let r = router(&[("GET", "/", "root")]);
        assert_eq!(found(&r, Method::GET, "/"), Some("root"));
        assert_eq!(found(&r, Method::GET, "//"), Some("root"));
        assert_eq!(found(&r, Method::GET, "/x"), None);
    }
}
