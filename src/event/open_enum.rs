//! Open enums: string values with known arms and an arm that keeps anything new.
//!
//! Periskope adds message types, chat types and states without notice; a decoder that rejected
//! an unknown value would lose the delivery. Known values match without allocating; an unknown
//! one is kept in `Other`.

macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )*
            /// A value this version of the crate does not know, kept as sent.
            Other(String),
        }

        impl $name {
            /// Every known arm, in documentation order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The value as Periskope writes it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Other(text) => text,
                }
            }

            /// Whether the value is one this crate knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl $crate::event::open_enum::OpenValue for $name {
            fn unknown_text(&self) -> Option<String> {
                match self {
                    $name::Other(text) => Some(text.clone()),
                    _ => None,
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $( $text => $name::$variant, )*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <$crate::event::Str<'de>>::deserialize(deserializer)?;
                Ok($name::from(text.as_str()))
            }
        }
    };
}

pub(crate) use open_enum;

/// A value of an open enumeration: what drift reporting asks of it.
pub(crate) trait OpenValue {
    /// The value as sent, if this crate does not know it.
    fn unknown_text(&self) -> Option<String>;
}
