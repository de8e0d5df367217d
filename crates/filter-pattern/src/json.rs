//! Lazy JSON for JSON patterns (semantics §4.3): parse the event once, materialising only the
//! values that the pattern's selectors can reach (a trie of paths); everything else is skipped
//! by serde's `IgnoredAny`, which still checks that the whole event is valid JSON. A selected
//! value is first read as raw text, so that a number keeps its spelling (integers are exact at
//! any length) and a string without escapes is borrowed; only objects and arrays the trie
//! looks into are parsed further.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ast::Segment;

/// The paths a pattern reads, merged: at each node, the members and indexes to keep.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trie {
    members: Vec<(String, Trie)>,
    indexes: Vec<(usize, Trie)>,
    /// `.*` / `[*]`: every member of an object and every element of an array (semantics §4.3).
    any: Option<Box<Trie>>,
    /// A non-wildcard `IS NULL` ends here: note whether an array holds `null` at its first
    /// level (semantics §4.3).
    null_probe: bool,
}

impl Trie {
    /// Adds a selector's path; `null_probe` when an `IS NULL` without a wildcard tests it.
    pub(crate) fn insert(&mut self, path: &[Segment], null_probe: bool) {
        let Some((first, rest)) = path.split_first() else {
            self.null_probe |= null_probe;
            return;
        };
        let child = match first {
            Segment::Member(n) | Segment::QuotedMember(n) => {
                match self.members.iter().position(|(k, _)| k == n) {
                    Some(i) => &mut self.members[i].1,
                    None => {
                        self.members.push((n.clone(), Trie::default()));
                        let last = self.members.len() - 1;
                        &mut self.members[last].1
                    }
                }
            }
            Segment::Index(i) => match self.indexes.iter().position(|(k, _)| k == i) {
                Some(p) => &mut self.indexes[p].1,
                None => {
                    self.indexes.push((*i, Trie::default()));
                    let last = self.indexes.len() - 1;
                    &mut self.indexes[last].1
                }
            },
            Segment::AnyMember | Segment::AnyIndex => self.any.get_or_insert_with(Box::default),
        };
        child.insert(rest, null_probe);
    }

    /// Makes named children also carry what the wildcard beside them needs, so that lookup can
    /// take the named child alone.
    pub(crate) fn finish(&mut self) {
        if let Some(any) = &mut self.any {
            any.finish();
        }
        if let Some(any) = self.any.as_deref() {
            let any = any.clone();
            for (_, c) in &mut self.members {
                c.merge(&any);
            }
            for (_, c) in &mut self.indexes {
                c.merge(&any);
            }
        }
        for (_, c) in &mut self.members {
            c.finish();
        }
        for (_, c) in &mut self.indexes {
            c.finish();
        }
    }

    fn merge(&mut self, other: &Trie) {
        for (k, t) in &other.members {
            match self.members.iter_mut().find(|(m, _)| m == k) {
                Some((_, mine)) => mine.merge(t),
                None => self.members.push((k.clone(), t.clone())),
            }
        }
        for (k, t) in &other.indexes {
            match self.indexes.iter_mut().find(|(m, _)| m == k) {
                Some((_, mine)) => mine.merge(t),
                None => self.indexes.push((*k, t.clone())),
            }
        }
        if let Some(t) = &other.any {
            self.any.get_or_insert_with(Box::default).merge(t);
        }
        self.null_probe |= other.null_probe;
    }

    fn wants_object(&self) -> bool {
        !self.members.is_empty() || self.any.is_some()
    }

    fn wants_array(&self) -> bool {
        !self.indexes.is_empty() || self.any.is_some() || self.null_probe
    }

    fn member(&self, key: &str) -> Option<&Trie> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| t)
            .or(self.any.as_deref())
    }

    fn index(&self, i: usize) -> Option<&Trie> {
        self.indexes
            .iter()
            .find(|(k, _)| *k == i)
            .map(|(_, t)| t)
            .or(self.any.as_deref())
    }
}

/// A projected JSON value: only what the trie asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    /// A number, as written in the event (read by the `decimal` module).
    Num(&'a str),
    Str(Cow<'a, str>),
    /// An object or array whose contents no selector reads.
    Container,
    /// An object with the members the trie keeps (duplicate keys: the last wins).
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
    /// An array with the elements the trie keeps, by index, and whether any element at its
    /// first level is `null` (computed where the trie asks: `null_probe`).
    Arr {
        items: Vec<(usize, Val<'a>)>,
        null_element: bool,
    },
}

impl<'a> Val<'a> {
    /// The member or element a step selects (absent: `None`); wildcards are not steps here.
    pub(crate) fn step(&self, seg: &Segment) -> Option<&Val<'a>> {
        match (seg, self) {
            (Segment::Member(n) | Segment::QuotedMember(n), Val::Obj(members)) => {
                members.iter().find(|(k, _)| k == n).map(|(_, v)| v)
            }
            (Segment::Index(i), Val::Arr { items, .. }) => {
                items.iter().find(|(k, _)| k == i).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Calls `f` on each node a wildcard selects — every member value of an object, every
    /// element of an array, nothing otherwise (semantics §4.3) — until it returns true.
    pub(crate) fn any_child(&self, f: &mut dyn FnMut(&Val<'a>) -> bool) -> bool {
        match self {
            Val::Obj(members) => members.iter().any(|(_, c)| f(c)),
            Val::Arr { items, .. } => items.iter().any(|(_, c)| f(c)),
            _ => false,
        }
    }
}

/// The node a wildcard-free path selects from `v`, or `None` when it is absent.
pub(crate) fn resolve<'v, 'a>(v: &'v Val<'a>, path: &[Segment]) -> Option<&'v Val<'a>> {
    path.iter().try_fold(v, |v, seg| v.step(seg))
}

/// Parses `event` as one JSON document whose root is an object, keeping what `trie` selects.
/// `None` if the event is not valid JSON or its root is not an object (then a JSON pattern
/// does not match, not even `NOT EXISTS` — semantics §4.3, decision A10).
pub(crate) fn project<'a>(event: &'a str, trie: &Trie) -> Option<Val<'a>> {
    let first = event
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    if first != b'{' {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(event);
    let v = de.deserialize_any(ValVisitor(trie)).ok()?;
    de.end().ok()?;
    Some(v)
}

struct Seed<'t>(&'t Trie);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Val<'de>;

    /// Reads the value as raw text first (so that a number keeps its spelling), then
    /// materialises it as the trie asks.
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        from_raw(raw.get(), self.0).map_err(de::Error::custom)
    }
}

fn from_raw<'a>(raw: &'a str, trie: &Trie) -> Result<Val<'a>, serde_json::Error> {
    let raw = raw.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r'));
    Ok(match raw.as_bytes().first() {
        Some(b'"') => {
            let inner = &raw[1..raw.len().saturating_sub(1).max(1)];
            if inner.contains('\\') {
                Val::Str(Cow::Owned(serde_json::from_str::<String>(raw)?))
            } else {
                Val::Str(Cow::Borrowed(inner))
            }
        }
        Some(b'{') if trie.wants_object() => {
            let mut de = serde_json::Deserializer::from_str(raw);
            de.deserialize_any(ValVisitor(trie))?
        }
        Some(b'[') if trie.wants_array() => {
            let mut de = serde_json::Deserializer::from_str(raw);
            de.deserialize_any(ValVisitor(trie))?
        }
        Some(b'{' | b'[') => Val::Container,
        Some(b't') => Val::Bool(true),
        Some(b'f') => Val::Bool(false),
        Some(b'n') => Val::Null,
        _ => Val::Num(raw),
    })
}

struct ValVisitor<'t>(&'t Trie);

impl<'de> Visitor<'de> for ValVisitor<'_> {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        if !self.0.wants_object() {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Val::Container);
        }
        let mut members: Vec<(Cow<'de, str>, Val<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.0.member(&key) {
                Some(child) => {
                    let v = map.next_value_seed(Seed(child))?;
                    match members.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = v,
                        None => members.push((key, v)),
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Val::Obj(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        if !self.0.wants_array() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Val::Container);
        }
        let mut items = Vec::new();
        let mut null_element = false;
        let mut i = 0usize;
        loop {
            match self.0.index(i) {
                Some(child) => match seq.next_element_seed(Seed(child))? {
                    Some(v) => {
                        null_element |= v == Val::Null;
                        items.push((i, v));
                    }
                    None => break,
                },
                None if self.0.null_probe => match seq.next_element::<&'de RawValue>()? {
                    Some(raw) => null_element |= raw.get().trim() == "null",
                    None => break,
                },
                None => {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                }
            }
            i += 1;
        }
        Ok(Val::Arr {
            items,
            null_element,
        })
    }
}

/// Object keys without allocating when they hold no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(paths: &[&[Segment]]) -> Trie {
        let mut t = Trie::default();
        for p in paths {
            t.insert(p, false);
        }
        t.finish();
        t
    }

    #[test]
    fn keeps_only_selected_members() {
        let t = trie(&[&[Segment::Member("a".into()), Segment::Member("b".into())]]);
        let v = project(r#"{"x":[1,2,{"y":3}],"a":{"b":"hi","c":1}}"#, &t).unwrap();
        assert_eq!(
            v,
            Val::Obj(vec![(
                "a".into(),
                Val::Obj(vec![("b".into(), Val::Str("hi".into()))])
            )])
        );
    }

    #[test]
    fn invalid_or_trailing_text_or_a_non_object_root_is_not_matched() {
        let t = trie(&[&[Segment::Member("a".into())]]);
        assert!(project(r#"{"a":1"#, &t).is_none());
        assert!(project(r#"{"a":1} x"#, &t).is_none());
        assert!(project(r#"INFO {"a":1}"#, &t).is_none());
        assert!(project(r#"[{"a":1}]"#, &t).is_none());
        assert!(project(r#""a""#, &t).is_none());
        assert!(project(r#"  {"a":1}  "#, &t).is_some());
    }

    #[test]
    fn numbers_keep_their_spelling() {
        let t = trie(&[&[Segment::Member("n".into())]]);
        let v = project(r#"{"n": 1.50e+3 }"#, &t).unwrap();
        assert_eq!(v, Val::Obj(vec![("n".into(), Val::Num("1.50e+3"))]));
        let v = project(r#"{"n":123456789012345678901234567890}"#, &t).unwrap();
        assert_eq!(
            v,
            Val::Obj(vec![(
                "n".into(),
                Val::Num("123456789012345678901234567890")
            )])
        );
    }

    #[test]
    fn escaped_keys_strings_and_duplicate_keys() {
        let t = trie(&[&[Segment::Member("ab".into())]]);
        let v = project(r#"{"a\u0062":1,"ab":"x\"y"}"#, &t).unwrap();
        assert_eq!(v, Val::Obj(vec![("ab".into(), Val::Str("x\"y".into()))]));
    }

    #[test]
    fn wildcards_select_members_and_elements() {
        let t = trie(&[&[Segment::AnyIndex, Segment::Member("id".into())]]);
        let v = project(r#"{"a":{"id":1,"x":2},"b":[{"id":3}],"c":{"id":"4"}}"#, &t).unwrap();
        let mut ids = Vec::new();
        v.any_child(&mut |c| {
            if let Some(id) = resolve(c, &[Segment::Member("id".into())]) {
                ids.push(format!("{id:?}"));
            }
            false
        });
        assert_eq!(ids, vec!["Num(\"1\")", "Str(\"4\")"]);
    }

    #[test]
    fn null_probe_sees_first_level_nulls_only() {
        let mut t = Trie::default();
        t.insert(&[Segment::Member("m".into())], true);
        t.finish();
        let probe = |event: &str| {
            let v = project(event, &t).unwrap();
            matches!(
                resolve(&v, &[Segment::Member("m".into())]),
                Some(Val::Arr {
                    null_element: true,
                    ..
                })
            )
        };
        assert!(probe(r#"{"m":[4,null]}"#));
        assert!(!probe(r#"{"m":[[null]]}"#));
        assert!(!probe(r#"{"m":[{"v":null}]}"#));
    }
}
