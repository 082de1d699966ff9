//! Enums whose values are words: one definition gives the variants, their names, the list of
//! allowed names, parsing (case-insensitive) and display.

/// An enum of named values, as [`choice!`] defines them.
pub(crate) trait Choice: Copy + 'static {
    /// Every value, in the order of the definition.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// The value named `s` (surrounding blanks ignored, any case).
pub(crate) fn find<T: Choice>(s: &str) -> Option<T> {
    let s = s.trim();
    T::ALL
        .iter()
        .copied()
        .find(|v| v.name().eq_ignore_ascii_case(s))
}

/// The allowed names, for messages: "ecs, classic".
pub(crate) fn allowed<T: Choice>() -> String {
    T::ALL
        .iter()
        .map(|v| v.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Defines a public enum of named values:
///
/// ```ignore
/// choice! {
///     /// The document format.
///     pub enum Format: "a format", default Ecs {
///         /// Elastic Common Schema.
///         Ecs = "ecs",
///         Classic = "classic",
///     }
/// }
/// ```
///
/// gives the enum (`#[non_exhaustive]`; `Debug`, `Clone`, `Copy`, `PartialEq`, `Eq`, `Hash`), `ALL`, `as_str`,
/// `Display`, `FromStr` (any case; the error lists the allowed names), `Deserialize` (through
/// `FromStr`) and, with `default V`, `DEFAULT` and `Default`.
macro_rules! choice {
    (
        $(#[$attr:meta])*
        pub enum $Enum:ident : $what:literal $(, default $Default:ident)? {
            $(
                $(#[$vattr:meta])*
                $Variant:ident = $name:literal,
            )+
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        // Values get added (formats, detectors, policies): a match elsewhere needs a `_` arm.
        #[non_exhaustive]
        pub enum $Enum {
            $(
                $(#[$vattr])*
                $Variant,
            )+
        }

        impl $Enum {
            /// Every value, in the order of the definition.
            pub const ALL: &'static [$Enum] = &[$($Enum::$Variant),+];
            $(
                /// The default value.
                pub const DEFAULT: $Enum = $Enum::$Default;
            )?

            /// The value's name, as written in a file or variable.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($Enum::$Variant => $name,)+
                }
            }
        }

        $(
            impl ::std::default::Default for $Enum {
                fn default() -> Self {
                    $Enum::$Default
                }
            }
        )?

        impl $crate::choice::Choice for $Enum {
            const ALL: &'static [Self] = $Enum::ALL;
            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        impl ::std::fmt::Display for $Enum {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $Enum {
            type Err = String;
            /// Any case, surrounding blanks ignored; the error lists the allowed names.
            fn from_str(s: &str) -> Result<Self, String> {
                $crate::choice::find(s).ok_or_else(|| {
                    format!(
                        "`{}` is not {}; allowed: {}",
                        s.trim(),
                        $what,
                        $crate::choice::allowed::<$Enum>()
                    )
                })
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $Enum {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use choice;

#[cfg(test)]
mod tests {
    use super::*;

    choice! {
        /// A test enum.
        pub enum Colour: "a colour", default Red {
            Red = "red",
            /// With a doc.
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn one_definition_gives_names_parsing_and_the_allowed_list() {
        assert_eq!(Colour::ALL, &[Colour::Red, Colour::DarkBlue]);
        assert_eq!(Colour::default(), Colour::Red);
        assert_eq!(Colour::DEFAULT, Colour::Red);
        assert_eq!(Colour::DarkBlue.to_string(), "dark_blue");
        assert_eq!(" Dark_BLUE ".parse::<Colour>(), Ok(Colour::DarkBlue));
        assert_eq!(
            "green".parse::<Colour>(),
            Err("`green` is not a colour; allowed: red, dark_blue".to_string())
        );
        assert_eq!(allowed::<Colour>(), "red, dark_blue");
        assert_eq!(
            serde_json::from_str::<Colour>("\"RED\"").ok(),
            Some(Colour::Red)
        );
        assert!(serde_json::from_str::<Colour>("\"green\"").is_err());
    }
}
