//! A bound on the memory that decoding a review builds, whatever its size on the wire.
//!
//! The body's size bounds the bytes received, not what decoding makes of them: a list element
//! written `{}` is three bytes of JSON and a whole struct in memory (a container is several
//! hundred bytes of empty options), so a 3 MiB review of empty containers would decode to
//! hundreds of megabytes. [`Metered`] wraps a deserializer and charges a [`Meter`] for what the
//! values it produces hold: each element of a list and each entry of a map (at twice the size of
//! its type in memory, for the spare capacity a growing `Vec` or B-tree node keeps) and each
//! string (its length). Past the meter's limit decoding stops with an error, so a review that
//! would not fit is refused after building at most the limit, not after building all of it.
//!
//! The charge is an estimate, deliberately on the high side: members of a struct are not
//! charged on their own (they are part of the struct, charged as the list element or map value
//! it is), members passed over unread (`IgnoredAny`) cost nothing, and boxed members (a
//! container's probes) and enum payloads are not charged (a handful per container, bounded by
//! the containers that are).

use std::cell::Cell;
use std::fmt;
use std::mem::size_of;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

/// What decoding may build, and what it has built so far.
#[derive(Debug)]
pub(crate) struct Meter {
    used: Cell<usize>,
    limit: usize,
    tripped: Cell<bool>,
}

impl Meter {
    /// A meter that stops decoding past `limit` bytes.
    pub(crate) fn new(limit: usize) -> Meter {
        Meter {
            used: Cell::new(0),
            limit,
            tripped: Cell::new(false),
        }
    }

    /// A meter with `used` bytes already charged (to decode again what a meter stopped).
    pub(crate) fn starting_at(limit: usize, used: usize) -> Meter {
        let meter = Meter::new(limit);
        meter.used.set(used);
        meter
    }

    /// The bytes charged so far.
    pub(crate) fn used(&self) -> usize {
        self.used.get()
    }

    /// The limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Whether decoding went past the limit (the error that stopped it came from here).
    pub(crate) fn tripped(&self) -> bool {
        self.tripped.get()
    }

    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limit {
            self.tripped.set(true);
            return Err(E::custom(format_args!(
                "decoding stopped here: the object takes more than {} bytes of memory to evaluate",
                self.limit
            )));
        }
        Ok(())
    }

    /// Charges a list element or map member of type `T`.
    fn charge_item<T, E: de::Error>(&self) -> Result<(), E> {
        self.charge(2 * size_of::<T>())
    }
}

/// A deserializer whose values are charged to a [`Meter`].
pub(crate) struct Metered<'m, D> {
    de: D,
    meter: &'m Meter,
}

impl<'m, D> Metered<'m, D> {
    pub(crate) fn new(de: D, meter: &'m Meter) -> Self {
        Metered { de, meter }
    }
}

macro_rules! forward {
    ($charged:expr; $($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.de.$method($($arg,)* Wrap { visitor, meter: self.meter, charged: $charged })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Metered<'_, D> {
    type Error = D::Error;

    forward! { true;
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
    }

    // A struct's members are inside it: charged as the element or value the struct is.
    forward! { false;
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_enum(name, variants, visitor)
    }

    // Member names and skipped values build nothing.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_identifier(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The visitor the wrapped deserializer calls: strings are charged, lists and maps handed on
/// wrapped.
struct Wrap<'m, V> {
    visitor: V,
    meter: &'m Meter,
    /// Whether the members of a map are charged (not for a struct's).
    charged: bool,
}

macro_rules! pass {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.visitor.$method(v)
            }
        )*
    };
}

macro_rules! charge_len {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.meter.charge(v.len())?;
                self.visitor.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    pass! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
    }

    charge_len! {
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, de: D2) -> Result<V::Value, D2::Error> {
        self.visitor.visit_some(Metered::new(de, self.meter))
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, de: D2) -> Result<V::Value, D2::Error> {
        self.visitor
            .visit_newtype_struct(Metered::new(de, self.meter))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Elements {
            seq,
            meter: self.meter,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Entries {
            map,
            meter: self.meter,
            charged: self.charged,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// A list's elements, each charged and decoded through [`Metered`].
struct Elements<'m, A> {
    seq: A,
    meter: &'m Meter,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Elements<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let element = self.seq.next_element_seed(Seeded {
            seed,
            meter: self.meter,
        })?;
        if element.is_some() {
            self.meter.charge_item::<T::Value, A::Error>()?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// A map's or a struct's members, decoded through [`Metered`]; a map's are charged.
struct Entries<'m, A> {
    map: A,
    meter: &'m Meter,
    charged: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Entries<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if !self.charged {
            // A struct's member names: nothing is built.
            return self.map.next_key_seed(seed);
        }
        let key = self.map.next_key_seed(Seeded {
            seed,
            meter: self.meter,
        })?;
        if key.is_some() {
            self.meter.charge_item::<K::Value, A::Error>()?;
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let value = self.map.next_value_seed(Seeded {
            seed,
            meter: self.meter,
        })?;
        if self.charged {
            self.meter.charge_item::<T::Value, A::Error>()?;
        }
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A seed whose value is decoded through [`Metered`].
struct Seeded<'m, T> {
    seed: T,
    meter: &'m Meter,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seeded<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T::Value, D::Error> {
        self.seed.deserialize(Metered::new(de, self.meter))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::pod::Pod;

    fn metered<T: for<'de> Deserialize<'de>>(
        json: &str,
        limit: usize,
    ) -> (Result<T, String>, usize) {
        let meter = Meter::new(limit);
        let mut de = serde_json::Deserializer::from_str(json);
        let value = T::deserialize(Metered::new(&mut de, &meter)).map_err(|e| e.to_string());
        (value, meter.used())
    }

    #[test]
    fn charges_elements_entries_and_strings_not_struct_members() {
        let (value, used) = metered::<Vec<String>>(r#"["ab", "", "cde"]"#, 1 << 20);
        assert_eq!(value.unwrap().len(), 3);
        assert_eq!(used, 3 * 2 * size_of::<String>() + 5);
        let (value, used) = metered::<BTreeMap<String, String>>(r#"{"a": "bc"}"#, 1 << 20);
        assert_eq!(value.unwrap()["a"], "bc");
        assert_eq!(used, 2 * 2 * size_of::<String>() + 3);
        // A pod of three empty containers: three containers, nothing for the members.
        let (value, used) = metered::<Pod>(r#"{"spec": {"containers": [{}, {}, {}]}}"#, 1 << 20);
        assert_eq!(value.unwrap().spec.unwrap().containers.len(), 3);
        assert_eq!(used, 3 * 2 * size_of::<crate::pod::Container>());
        // Skipped members cost nothing.
        let (_, used) = metered::<Pod>(
            r#"{"metadata": {"managedFields": [{}, {}, {"a": "long string"}]}}"#,
            1 << 20,
        );
        assert_eq!(used, 0);
    }

    #[test]
    fn stops_past_the_limit_and_says_so() {
        let containers = vec!["{}"; 10_000].join(",");
        let json = format!(r#"{{"spec": {{"containers": [{containers}]}}}}"#);
        let meter = Meter::new(64 * 1024);
        let mut de = serde_json::Deserializer::from_str(&json);
        let err = Pod::deserialize(Metered::new(&mut de, &meter)).unwrap_err();
        assert!(meter.tripped());
        assert!(meter.used() <= 64 * 1024 + 2 * size_of::<crate::pod::Container>());
        assert!(
            err.to_string().starts_with(
                "decoding stopped here: the object takes more than 65536 bytes of memory to evaluate"
            ),
            "{err}"
        );
        // Under the limit, the same decoder decodes as serde_json does.
        let (value, _) = metered::<Pod>(&json, 64 << 20);
        assert_eq!(value.unwrap(), serde_json::from_str::<Pod>(&json).unwrap());
    }

    #[test]
    fn raw_values_decode_through_it() {
        let (value, used) =
            metered::<Box<serde_json::value::RawValue>>(r#"{"a": [1, 2]}"#, 1 << 20);
        assert_eq!(value.unwrap().get(), r#"{"a": [1, 2]}"#);
        assert!(used >= 13, "{used}");
    }
}
