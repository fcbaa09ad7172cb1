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
//!   ([`crate::testkit`]);
//! * a manifest with the crate's `CARGO_PKG_NAME`/`CARGO_PKG_VERSION`, the SDK version, the
//!   rustc version, and every type;
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
