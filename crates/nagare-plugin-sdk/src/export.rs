//! The [`export_plugins!`](crate::export_plugins) macro: turns a plugin crate into a loadable
//! `.so` module.
//!
//! ```ignore
//! nagare_plugin_sdk::export_plugins! {
//!     inputs: ["sample" => Sample, "dummy" => Sample],
//!     filters: ["grep" => Grep],
//!     outputs: ["null" => Null],
//! }
//! ```
//!
//! Each group is optional but the order is fixed (inputs, filters, outputs). The macro emits:
//! * `#[unsafe(no_mangle)] extern "C" fn nagare_plugin_abi_epoch() -> u32`, the plain probe
//!   the loader reads first with `libloading`;
//! * the abi_stable root-module header static (what `#[export_root_module]` would emit, but
//!   with paths through this crate so the plugin needs no direct `abi_stable` dependency);
//! * `pub fn nagare_plugin_module() -> PluginModRef`, the module itself, for in-process tests
//!   (the `testkit` feature);
//! * a manifest with the crate's `CARGO_PKG_NAME`/`CARGO_PKG_VERSION`, the SDK version, the
//!   rustc version, and every type;
//! * the same type list as a small data blob in the ELF section [`SECTION_NAME`]
//!   (`.nagare_manifest`, layout in [`section_bytes`]), so the host can index the `.so`
//!   by reading the file and `dlopen` it only when a configuration uses one of its types;
//! * constructors dispatching on `type_name`, each behind a panic guard.
//!
//! The exported symbols have fixed names, so link at most one plugin crate's rlib into one
//! binary (tests of one plugin are fine).

use abi_stable::std_types::{RString, RVec};
use nagare_plugin_api::{Manifest, PluginDescriptor, PluginKind};

/// The SDK's own version, recorded in every manifest.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The rustc that built the SDK (and so the plugin), e.g. `rustc 1.95.0 (…)`; may be empty.
pub const RUSTC_VERSION: &str = env!("NAGARE_SDK_RUSTC_VERSION");

/// The root-module loader symbol abi_stable looks up (checked by a test against abi_stable).
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// The ELF section holding the manifest blob (read by the host without loading the `.so`).
pub const SECTION_NAME: &str = ".nagare_manifest";

/// The first 8 bytes of the manifest blob.
pub const SECTION_MAGIC: [u8; 8] = *b"NAGAREMF";

/// The blob's layout version (the host loads files with another version eagerly).
pub const SECTION_FORMAT: u32 = 1;

/// Bytes before the body: magic, format, epoch, body length.
const SECTION_HEADER_LEN: usize = 20;

/// The section's metadata lines (`key:value`), before one `kind:type` line per plugin type.
const fn section_lines<'a>(package: &'a str, version: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("package", package),
        ("version", version),
        ("sdk", SDK_VERSION),
    ]
}

/// Checks one value of a manifest line and returns its length.
const fn line_value_len(value: &str) -> usize {
    let bytes = value.as_bytes();
    assert!(
        !bytes.is_empty(),
        "a plugin manifest value (package, version, @type) is empty"
    );
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i] != b'\n' && bytes[i] != b'\r' && bytes[i] != 0,
            "a plugin manifest value (package, version, @type) contains a line break or NUL"
        );
        i += 1;
    }
    bytes.len()
}

/// The size of the blob [`section_bytes`] builds for these arguments (used by the macro).
pub const fn section_len(
    package: &str,
    version: &str,
    inputs: &[&str],
    filters: &[&str],
    outputs: &[&str],
) -> usize {
    SECTION_HEADER_LEN + section_body_len(package, version, inputs, filters, outputs)
}

const fn section_body_len(
    package: &str,
    version: &str,
    inputs: &[&str],
    filters: &[&str],
    outputs: &[&str],
) -> usize {
    let mut len = 0;
    let meta = section_lines(package, version);
    let mut i = 0;
    while i < meta.len() {
        // "key:value\n"
        len += meta[i].0.len() + 1 + line_value_len(meta[i].1) + 1;
        i += 1;
    }
    let groups: [(&str, &[&str]); 3] =
        [("input", inputs), ("filter", filters), ("output", outputs)];
    let mut g = 0;
    while g < groups.len() {
        let (kind, names) = groups[g];
        let mut n = 0;
        while n < names.len() {
            len += kind.len() + 1 + line_value_len(names[n]) + 1;
            n += 1;
        }
        g += 1;
    }
    len
}

const fn put(out: &mut [u8], mut at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at] = bytes[i];
        at += 1;
        i += 1;
    }
    at
}

const fn put_line(out: &mut [u8], at: usize, key: &str, value: &str) -> usize {
    let at = put(out, at, key.as_bytes());
    let at = put(out, at, b":");
    let at = put(out, at, value.as_bytes());
    put(out, at, b"\n")
}

/// Builds the `.nagare_manifest` blob at compile time (used by the macro; `N` must be
/// [`section_len`] of the same arguments). Layout, integers little-endian:
///
/// | offset | size | content |
/// |---|---|---|
/// | 0 | 8 | [`SECTION_MAGIC`] |
/// | 8 | 4 | [`SECTION_FORMAT`] |
/// | 12 | 4 | the ABI epoch the plugin is built for |
/// | 16 | 4 | body length |
/// | 20 | body | UTF-8 lines `key:value\n`: `package`, `version`, `sdk`, then `input`/`filter`/`output` with an `@type` each |
///
/// Readers ignore keys they do not know and any bytes after the body (linker padding).
pub const fn section_bytes<const N: usize>(
    package: &str,
    version: &str,
    inputs: &[&str],
    filters: &[&str],
    outputs: &[&str],
) -> [u8; N] {
    let body_len = section_body_len(package, version, inputs, filters, outputs);
    assert!(
        N == SECTION_HEADER_LEN + body_len,
        "section_bytes: N must be section_len(..) of the same arguments"
    );
    assert!(body_len <= u32::MAX as usize, "plugin manifest too large");
    let mut out = [0u8; N];
    let at = put(&mut out, 0, &SECTION_MAGIC);
    let at = put(&mut out, at, &SECTION_FORMAT.to_le_bytes());
    let at = put(&mut out, at, &nagare_plugin_api::ABI_EPOCH.to_le_bytes());
    let mut at = put(&mut out, at, &(body_len as u32).to_le_bytes());
    let meta = section_lines(package, version);
    let mut i = 0;
    while i < meta.len() {
        at = put_line(&mut out, at, meta[i].0, meta[i].1);
        i += 1;
    }
    let groups: [(&str, &[&str]); 3] =
        [("input", inputs), ("filter", filters), ("output", outputs)];
    let mut g = 0;
    while g < groups.len() {
        let (kind, names) = groups[g];
        let mut n = 0;
        while n < names.len() {
            at = put_line(&mut out, at, kind, names[n]);
            n += 1;
        }
        g += 1;
    }
    out
}

/// Builds a manifest (used by the macro).
pub fn manifest(
    package: &str,
    version: &str,
    inputs: &[&str],
    filters: &[&str],
    outputs: &[&str],
) -> Manifest {
    let mut plugins = RVec::new();
    for (kind, names) in [
        (PluginKind::INPUT, inputs),
        (PluginKind::FILTER, filters),
        (PluginKind::OUTPUT, outputs),
    ] {
        for name in names {
            plugins.push(PluginDescriptor {
                kind,
                type_name: RString::from(*name),
            });
        }
    }
    Manifest {
        package: package.into(),
        version: version.into(),
        sdk_version: SDK_VERSION.into(),
        rustc_version: RUSTC_VERSION.into(),
        plugins,
    }
}

/// Exports plugin types from a `cdylib` crate. See the [module docs](crate::export).
#[macro_export]
macro_rules! export_plugins {
    (
        $(inputs: [ $($in_name:literal => $in_ty:ty),* $(,)? ] $(,)?)?
        $(filters: [ $($fi_name:literal => $fi_ty:ty),* $(,)? ] $(,)?)?
        $(outputs: [ $($out_name:literal => $out_ty:ty),* $(,)? ] $(,)?)?
    ) => {
        /// The plain epoch probe the host's loader reads before anything else.
        #[unsafe(no_mangle)]
        pub extern "C" fn nagare_plugin_abi_epoch() -> u32 {
            $crate::api::ABI_EPOCH
        }

        #[allow(unused_variables, unreachable_patterns)]
        extern "C" fn __nagare_new_input(
            info: $crate::api::InstanceInfo<'_>,
            host: $crate::api::HostBox,
        ) -> $crate::api::NewResult<$crate::api::InputBox> {
            match info.type_name.as_str() {
                $($( $in_name => $crate::__private::RSome($crate::adapter::new_input::<$in_ty>(info, host)), )*)?
                _ => $crate::__private::RNone,
            }
        }

        #[allow(unused_variables, unreachable_patterns)]
        extern "C" fn __nagare_new_filter(
            info: $crate::api::InstanceInfo<'_>,
            host: $crate::api::HostBox,
        ) -> $crate::api::NewResult<$crate::api::FilterBox> {
            match info.type_name.as_str() {
                $($( $fi_name => $crate::__private::RSome($crate::adapter::new_filter::<$fi_ty>(info, host)), )*)?
                _ => $crate::__private::RNone,
            }
        }

        #[allow(unused_variables, unreachable_patterns)]
        extern "C" fn __nagare_new_output(
            info: $crate::api::InstanceInfo<'_>,
            host: $crate::api::HostBox,
        ) -> $crate::api::NewResult<$crate::api::OutputBox> {
            match info.type_name.as_str() {
                $($( $out_name => $crate::__private::RSome($crate::adapter::new_output::<$out_ty>(info, host)), )*)?
                _ => $crate::__private::RNone,
            }
        }

        extern "C" fn __nagare_manifest() -> $crate::api::Manifest {
            $crate::export::manifest(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
                &[$($($in_name),*)?],
                &[$($($fi_name),*)?],
                &[$($($out_name),*)?],
            )
        }

        const __NAGARE_MANIFEST_SECTION_LEN: usize = $crate::export::section_len(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            &[$($($in_name),*)?],
            &[$($($fi_name),*)?],
            &[$($($out_name),*)?],
        );

        /// The manifest's type list as data, for the host to read from the file without
        /// loading it (`.nagare_manifest`, see `nagare_plugin_sdk::export::section_bytes`).
        #[used]
        #[unsafe(link_section = ".nagare_manifest")]
        static __NAGARE_MANIFEST_SECTION: [u8; __NAGARE_MANIFEST_SECTION_LEN] =
            $crate::export::section_bytes::<__NAGARE_MANIFEST_SECTION_LEN>(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
                &[$($($in_name),*)?],
                &[$($($fi_name),*)?],
                &[$($($out_name),*)?],
            );

        /// This crate's plugin module (what the `.so` exports), for in-process use and tests.
        pub fn nagare_plugin_module() -> $crate::api::PluginModRef {
            use $crate::__private::PrefixTypeTrait as _;
            $crate::api::PluginMod {
                abi_epoch: $crate::api::ABI_EPOCH,
                manifest: __nagare_manifest,
                new_input: __nagare_new_input,
                new_filter: __nagare_new_filter,
                new_output: __nagare_new_output,
            }
            .leak_into_prefix()
        }

        /// The abi_stable library header (what `#[export_root_module]` generates).
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __nagare_erased_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(nagare_plugin_module)
            }
            // SAFETY: the constructor returns the module type named here, as abi_stable's own
            // `#[export_root_module]` expansion guarantees for the same call.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::api::PluginModRef>(
                    __nagare_erased_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blob for package `pkg` 1.2.3, built as the macro builds it (in a const context).
    macro_rules! blob {
        ($i:expr, $f:expr, $o:expr) => {
            section_bytes::<{ section_len("pkg", "1.2.3", $i, $f, $o) }>("pkg", "1.2.3", $i, $f, $o)
                .to_vec()
        };
    }

    fn check(blob: Vec<u8>, body: &str) {
        let mut expect = Vec::new();
        expect.extend_from_slice(b"NAGAREMF");
        expect.extend_from_slice(&1u32.to_le_bytes());
        expect.extend_from_slice(&nagare_plugin_api::ABI_EPOCH.to_le_bytes());
        expect.extend_from_slice(&(body.len() as u32).to_le_bytes());
        expect.extend_from_slice(body.as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&blob),
            String::from_utf8_lossy(&expect)
        );
    }

    #[test]
    fn section_blob_layout() {
        let meta = format!("package:pkg\nversion:1.2.3\nsdk:{SDK_VERSION}\n");
        check(blob!(&[], &[], &[]), &meta);
        check(blob!(&[], &[], &["null"]), &format!("{meta}output:null\n"));
        check(
            blob!(&["forward", "dummy"], &["grep"], &["null", "stdout"]),
            &format!("{meta}input:forward\ninput:dummy\nfilter:grep\noutput:null\noutput:stdout\n"),
        );
    }

    #[test]
    #[should_panic(expected = "line break")]
    fn line_breaks_in_values_are_refused() {
        // In the macro this is a const evaluation, so the plugin fails to build.
        let _ = section_len("p", "0", &["a\nb"], &[], &[]);
    }

    #[test]
    #[should_panic(expected = "is empty")]
    fn empty_values_are_refused() {
        let _ = section_len("p", "0", &[], &[""], &[]);
    }
}
