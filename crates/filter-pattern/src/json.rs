//! Lazy JSON for JSON patterns: parse the event once, materialising only the values that the
//! pattern's selectors can reach (a trie of paths); everything else is skipped by serde's
//! `IgnoredAny`, which still checks that the whole event is valid JSON.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::ast::Segment;

/// The paths a pattern reads, merged: at each node, the members and indexes to keep.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trie {
    members: Vec<(String, Trie)>,
    any_member: Option<Box<Trie>>,
    indexes: Vec<(usize, Trie)>,
    any_index: Option<Box<Trie>>,
}

impl Trie {
    pub(crate) fn insert(&mut self, path: &[Segment]) {
        let Some((first, rest)) = path.split_first() else {
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
            Segment::AnyMember => self.any_member.get_or_insert_with(Box::default),
            Segment::AnyIndex => self.any_index.get_or_insert_with(Box::default),
        };
        child.insert(rest);
    }

    /// Makes named children also carry what the wildcard beside them needs, so that lookup can
    /// take the named child alone.
    pub(crate) fn finish(&mut self) {
        if let Some(any) = &mut self.any_member {
            any.finish();
        }
        if let Some(any) = &mut self.any_index {
            any.finish();
        }
        if let Some(any) = self.any_member.as_deref() {
            let any = any.clone();
            for (_, c) in &mut self.members {
                c.merge(&any);
            }
        }
        if let Some(any) = self.any_index.as_deref() {
            let any = any.clone();
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
        if let Some(t) = &other.any_member {
            self.any_member.get_or_insert_with(Box::default).merge(t);
        }
        if let Some(t) = &other.any_index {
            self.any_index.get_or_insert_with(Box::default).merge(t);
        }
    }

    fn wants_object(&self) -> bool {
        !self.members.is_empty() || self.any_member.is_some()
    }

    fn wants_array(&self) -> bool {
        !self.indexes.is_empty() || self.any_index.is_some()
    }

    fn member(&self, key: &str) -> Option<&Trie> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| t)
            .or(self.any_member.as_deref())
    }

    fn index(&self, i: usize) -> Option<&Trie> {
        self.indexes
            .iter()
            .find(|(k, _)| *k == i)
            .map(|(_, t)| t)
            .or(self.any_index.as_deref())
    }
}

/// A JSON number as serde_json reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl Num {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::U(u) => u as f64,
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::U(u) => write!(f, "{u}"),
            Num::I(i) => write!(f, "{i}"),
            Num::F(x) => write!(f, "{x}"),
        }
    }
}

/// A projected JSON value: only what the trie asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(Cow<'a, str>),
    /// An object or array whose contents no selector reads.
    Container,
    /// An object with the members the trie keeps (duplicate keys: the last wins).
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
    /// An array with the elements the trie keeps, by index.
    Arr(Vec<(usize, Val<'a>)>),
}

/// Parses `event` as one JSON document, keeping what `trie` selects. `None` if the event is
/// not valid JSON (then a JSON pattern does not match — spec §4.3, §9 A10).
pub(crate) fn project<'a>(event: &'a str, trie: &Trie) -> Option<Val<'a>> {
    let mut de = serde_json::Deserializer::from_str(event);
    let v = Seed(trie).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

/// Calls `f` on every node that `path` selects from `v`; true as soon as `f` returns true.
pub(crate) fn any_selected(
    v: &Val<'_>,
    path: &[Segment],
    f: &mut dyn FnMut(&Val<'_>) -> bool,
) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return f(v);
    };
    match (first, v) {
        (Segment::Member(n) | Segment::QuotedMember(n), Val::Obj(members)) => members
            .iter()
            .find(|(k, _)| k == n)
            .is_some_and(|(_, c)| any_selected(c, rest, f)),
        (Segment::AnyMember, Val::Obj(members)) => {
            members.iter().any(|(_, c)| any_selected(c, rest, f))
        }
        (Segment::Index(i), Val::Arr(items)) => items
            .iter()
            .find(|(k, _)| k == i)
            .is_some_and(|(_, c)| any_selected(c, rest, f)),
        (Segment::AnyIndex, Val::Arr(items)) => items.iter().any(|(_, c)| any_selected(c, rest, f)),
        _ => false,
    }
}

struct Seed<'t>(&'t Trie);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Val<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(ValVisitor(self.0))
    }
}

struct ValVisitor<'t>(&'t Trie);

impl<'de> Visitor<'de> for ValVisitor<'_> {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(Val::Num(Num::U(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Num(Num::I(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::Num(Num::F(v)))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
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
        let mut i = 0usize;
        loop {
            match self.0.index(i) {
                Some(child) => match seq.next_element_seed(Seed(child))? {
                    Some(v) => items.push((i, v)),
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
        Ok(Val::Arr(items))
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
            t.insert(p);
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
    fn invalid_or_trailing_text_is_not_json() {
        let t = trie(&[&[Segment::Member("a".into())]]);
        assert!(project(r#"{"a":1"#, &t).is_none());
        assert!(project(r#"{"a":1} x"#, &t).is_none());
        assert!(project(r#"INFO {"a":1}"#, &t).is_none());
        assert!(project(r#"  {"a":1}  "#, &t).is_some());
    }

    #[test]
    fn escaped_keys_and_duplicate_keys() {
        let t = trie(&[&[Segment::Member("ab".into())]]);
        let v = project(r#"{"a\u0062":1,"ab":2}"#, &t).unwrap();
        assert_eq!(v, Val::Obj(vec![("ab".into(), Val::Num(Num::U(2)))]));
    }

    #[test]
    fn wildcard_merges_into_named_children() {
        let t = trie(&[
            &[Segment::AnyMember, Segment::Member("id".into())],
            &[Segment::Member("a".into()), Segment::Member("x".into())],
        ]);
        let v = project(r#"{"a":{"id":1,"x":2},"b":{"id":3}}"#, &t).unwrap();
        let mut ids = Vec::new();
        any_selected(
            &v,
            &[Segment::AnyMember, Segment::Member("id".into())],
            &mut |n| {
                ids.push(format!("{n:?}"));
                false
            },
        );
        assert_eq!(ids, vec!["Num(U(1))", "Num(U(3))"]);
    }
}
