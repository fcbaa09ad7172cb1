//! Adapters from the plugin-author traits to the ABI's `#[sabi_trait]`s. Every method runs
//! inside [`crate::guard::catch`], so a panic comes back as a `PANIC` error and the host lives.
//! The export macro calls [`new_input`], [`new_filter`] and [`new_output`]; plugin authors
//! never need this module directly.

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use nagare_plugin_api::{
    self as api, ChunkRef, EmitterBox, FilterBox, HostBox, InputBox, InstanceInfo, OutputBox,
    PluginError,
};

use crate::context::PluginContext;
use crate::guard::catch;
use crate::plugin::{Chunk, Emitter, Filter, FilterOutcome, Input, Output};

struct InputAdapter<T>(T);
struct FilterAdapter<T>(T);
struct OutputAdapter<T>(T);

impl<T: Input> api::Input for InputAdapter<T> {
    fn start(&mut self, emitter: EmitterBox) -> RResult<(), PluginError> {
        catch(|| self.0.start(Emitter::new(emitter))).into()
    }

    fn stop(&mut self) -> RResult<(), PluginError> {
        catch(|| self.0.stop()).into()
    }
}

impl<T: Filter> api::Filter for FilterAdapter<T> {
    fn filter(&self, chunk: ChunkRef<'_>) -> RResult<api::FilterOutcome, PluginError> {
        catch(|| {
            Ok(match self.0.filter(Chunk::new(chunk))? {
                FilterOutcome::Unchanged => api::FilterOutcome::Unchanged,
                FilterOutcome::Dropped => api::FilterOutcome::Dropped,
                FilterOutcome::Replaced { records, data } => api::FilterOutcome::Replaced {
                    records,
                    data: RVec::from(data),
                },
            })
        })
        .into()
    }
}

impl<T: Output> api::Output for OutputAdapter<T> {
    fn start(&mut self) -> RResult<(), PluginError> {
        catch(|| self.0.start()).into()
    }

    fn write(&self, chunk: ChunkRef<'_>) -> RResult<(), PluginError> {
        catch(|| self.0.write(Chunk::new(chunk))).into()
    }

    fn control(&self, op: RStr<'_>, payload: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        catch(|| {
            if op.as_str() == api::CHUNK_FORMATS_OP {
                return Ok(RVec::from(chunk_formats(self.0.accepts_file_ranges())));
            }
            self.0
                .control(op.as_str(), payload.as_slice())
                .map(RVec::from)
        })
        .into()
    }

    fn stop(&mut self) -> RResult<(), PluginError> {
        catch(|| self.0.stop()).into()
    }
}

fn context(info: &InstanceInfo<'_>, host: HostBox) -> PluginContext {
    PluginContext::new(info.plugin_id.as_str(), info.type_name.as_str(), host)
}

/// Builds an input of type `T` (a panic in `T::new` becomes a `PANIC` error).
pub fn new_input<T: Input>(
    info: InstanceInfo<'_>,
    host: HostBox,
) -> RResult<InputBox, PluginError> {
    catch(|| {
        let ctx = context(&info, host);
        let value = T::new(&ctx, info.config)?;
        Ok(InputBox::from_value(InputAdapter(value), TD_Opaque))
    })
    .into()
}

/// Builds a filter of type `T`.
pub fn new_filter<T: Filter>(
    info: InstanceInfo<'_>,
    host: HostBox,
) -> RResult<FilterBox, PluginError> {
    catch(|| {
        let ctx = context(&info, host);
        let value = T::new(&ctx, info.config)?;
        Ok(FilterBox::from_value(FilterAdapter(value), TD_Opaque))
    })
    .into()
}

/// Builds an output of type `T`.
pub fn new_output<T: Output>(
    info: InstanceInfo<'_>,
    host: HostBox,
) -> RResult<OutputBox, PluginError> {
    catch(|| {
        let ctx = context(&info, host);
        let value = T::new(&ctx, info.config)?;
        Ok(OutputBox::from_value(OutputAdapter(value), TD_Opaque))
    })
    .into()
}

/// The answer to [`api::CHUNK_FORMATS_OP`]: a msgpack array of the formats `write` takes.
fn chunk_formats(file_ranges: bool) -> Vec<u8> {
    let mut formats = vec![
        api::ChunkFormat::MSGPACK_STREAM,
        api::ChunkFormat::MSGPACK_STREAM_GZIP,
    ];
    if file_ranges {
        formats.push(api::ChunkFormat::FILE_RANGES);
    }
    let mut out = Vec::with_capacity(1 + formats.len());
    // Writing into a Vec cannot fail; a fixarray of positive fixints.
    let _ = rmp::encode::write_array_len(&mut out, formats.len() as u32);
    for f in formats {
        let _ = rmp::encode::write_uint(&mut out, u64::from(f.0));
    }
    out
}
