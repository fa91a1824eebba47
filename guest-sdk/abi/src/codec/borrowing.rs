//! A serde adapter that asks the decoder for every byte string and string as borrowed input.
//!
//! bincode decodes an owned byte buffer (`deserialize_byte_buf`, what `serde_bytes::ByteBuf`
//! asks for) or an owned string (`deserialize_string`) into a buffer it zero-fills first, then
//! copies the input over: two passes over every byte. Asked for borrowed bytes or a borrowed
//! `str` instead, it hands over a slice of its input, which the value's visitor copies once
//! into what it owns (a visitor that wants ownership takes borrowed input too). [`Borrowing`]
//! wraps a deserializer and does that asking, at every level of the value: each visitor, seed,
//! sequence, map and enum it passes on is wrapped in turn. Everything else goes through as it
//! is, so a value decodes exactly as it would without the adapter.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

/// Decodes a `T` through [`Borrowing`]: the seed [`crate::codec`] hands bincode.
pub struct BorrowingSeed<T>(pub PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for BorrowingSeed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::deserialize(Borrowing(deserializer))
    }
}

/// A deserializer that asks its inner one for borrowed byte strings and strings.
pub struct Borrowing<D>(pub D);

/// Forwards `deserialize_*` methods to the inner deserializer, with the visitor wrapped.
macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Visit(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Borrowing<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_bytes,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    /// The one change: an owned string is read as a borrowed one.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(Visit(visitor))
    }

    /// The other change: an owned byte buffer is read as borrowed bytes.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(Visit(visitor))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Visit(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Visit(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Visit(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Visit(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Visit(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Visit(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor whose nested deserializers, sequences, maps and enums are wrapped.
struct Visit<V>(V);

/// Forwards `visit_*` methods that take a plain value.
macro_rules! visit {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method<E: serde::de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.0.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    visit!(
        visit_bool: bool,
        visit_i8: i8,
        visit_i16: i16,
        visit_i32: i32,
        visit_i64: i64,
        visit_i128: i128,
        visit_u8: u8,
        visit_u16: u16,
        visit_u32: u32,
        visit_u64: u64,
        visit_u128: u128,
        visit_f32: f32,
        visit_f64: f64,
        visit_char: char,
        visit_str: &str,
        visit_borrowed_str: &'de str,
        visit_string: String,
        visit_bytes: &[u8],
        visit_borrowed_bytes: &'de [u8],
        visit_byte_buf: Vec<u8>,
    );

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Borrowing(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Borrowing(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Map(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Enum(data))
    }
}

/// A seed whose deserializer is wrapped.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Borrowing(deserializer))
    }
}

struct Seq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Map<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Enum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((value, Variant(variant)))
    }
}

struct Variant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Visit(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Visit(visitor))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use crate::codec;

    /// A value that says how bincode offered it its bytes and its string.
    #[derive(Debug, PartialEq)]
    struct Offered {
        bytes: &'static str,
        string: &'static str,
    }

    struct HowOffered(&'static str);

    impl<'de> serde::de::Visitor<'de> for HowOffered {
        type Value = &'static str;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }

        fn visit_borrowed_bytes<E>(self, _: &'de [u8]) -> Result<&'static str, E> {
            Ok("borrowed")
        }

        fn visit_byte_buf<E>(self, _: Vec<u8>) -> Result<&'static str, E> {
            Ok("owned")
        }

        fn visit_borrowed_str<E>(self, _: &'de str) -> Result<&'static str, E> {
            Ok("borrowed")
        }

        fn visit_str<E>(self, _: &str) -> Result<&'static str, E> {
            Ok("transient")
        }

        fn visit_string<E>(self, _: String) -> Result<&'static str, E> {
            Ok("owned")
        }
    }

    impl<'de> Deserialize<'de> for Offered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Pair;
            impl<'de> serde::de::Visitor<'de> for Pair {
                type Value = Offered;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes, then a string")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Offered, A::Error> {
                    struct Bytes(&'static str);
                    impl<'de> Deserialize<'de> for Bytes {
                        fn deserialize<D: serde::Deserializer<'de>>(
                            d: D,
                        ) -> Result<Self, D::Error> {
                            d.deserialize_byte_buf(HowOffered("bytes")).map(Bytes)
                        }
                    }
                    struct Text(&'static str);
                    impl<'de> Deserialize<'de> for Text {
                        fn deserialize<D: serde::Deserializer<'de>>(
                            d: D,
                        ) -> Result<Self, D::Error> {
                            d.deserialize_string(HowOffered("a string")).map(Text)
                        }
                    }
                    let bytes: Bytes = seq.next_element()?.expect("bytes");
                    let string: Text = seq.next_element()?.expect("a string");
                    Ok(Offered {
                        bytes: bytes.0,
                        string: string.0,
                    })
                }
            }
            d.deserialize_tuple(2, Pair)
        }
    }

    #[test]
    fn owned_bytes_and_strings_are_asked_for_as_borrowed() {
        // Inside an option and a sequence too: every level is wrapped.
        let written =
            codec::encode(&Some(vec![(serde_bytes::ByteBuf::from(vec![1, 2]), "x")])).unwrap();
        let read: Option<Vec<Offered>> = codec::decode(&written).unwrap();
        let borrowed = Offered {
            bytes: "borrowed",
            string: "borrowed",
        };
        assert_eq!(read, Some(vec![borrowed]));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Unit;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Newtype(String);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Named(String),
        Pair(serde_bytes::ByteBuf, char),
        Fields { text: String, big: i128, huge: u128 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        unit: Unit,
        newtype: Newtype,
        shapes: Vec<Shape>,
        map: BTreeMap<String, Vec<String>>,
        maybe: Option<serde_bytes::ByteBuf>,
        numbers: (bool, i8, u16, i32, u64, f32, f64),
        text: String,
    }

    #[test]
    fn every_kind_of_value_decodes_as_without_the_adapter() {
        let value = Everything {
            unit: Unit,
            newtype: Newtype("n".into()),
            shapes: vec![
                Shape::Empty,
                Shape::Named("named".into()),
                Shape::Pair(serde_bytes::ByteBuf::from(vec![9; 300]), 'é'),
                Shape::Fields {
                    text: "f".repeat(70_000),
                    big: -1 << 100,
                    huge: 1 << 120,
                },
            ],
            map: BTreeMap::from([("k".to_string(), vec!["v".to_string(), String::new()])]),
            maybe: Some(serde_bytes::ByteBuf::from(vec![])),
            numbers: (true, -8, 16, -32, 64, 1.5, -2.25),
            text: "naïve ✓".into(),
        };
        let written = codec::encode(&value).unwrap();
        assert_eq!(codec::decode::<Everything>(&written).unwrap(), value);
        assert_eq!(
            codec::decode_untrusted::<Everything>(&written).unwrap(),
            value
        );
        // A string that is not UTF-8 is refused, as without the adapter.
        let mut bad = codec::encode(&"ab").unwrap();
        bad[1] = 0xff;
        assert!(codec::decode::<String>(&bad).is_err());
    }
}
