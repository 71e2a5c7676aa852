//! The policy runner: orb-worker-style backends run on a Rust scheduler. Schedules, exact-size
//! chunking of encoded entities, sinks, the run store, the one run path (`_execute_run`), and the
//! policy manager. Python-free: the binding layer implements [`BackendLoader`] with real
//! `Backend` classes.

pub mod chunker;
pub mod config;
pub mod executor;
pub mod manager;
pub mod metrics;
pub mod protobuf;
pub mod protojson;
pub mod run;
pub mod run_store;
pub mod schedule;
pub mod sink;
pub mod source;
pub mod state_store;

pub use chunker::{Chunk, Chunker, DEFAULT_CHUNK_BYTES, stamp_run_id};
pub use config::{PolicyConfig, PolicySpec, parse_policies, parse_policies_yaml};
pub use executor::{
    BackendMetadata, BoxFuture, EventHook, IngestHandle, Producer, RunContext, RunEvent,
    RunExecutor, RunOutcome, RunTarget,
};
pub use manager::{
    BackendLoader, ManagerConfig, PolicyBackend, PolicyManager, ResolvedBackend, TickOutcome,
};
pub use protobuf::{ProtoChunkBody, ProtoChunker, RunIdPlacement};
pub use run::{Run, RunSource, RunStatus};
pub use run_store::{DEFAULT_MAX_RUNS_PER_POLICY, MemoryRunStore, RunStore};
pub use schedule::Schedule;
pub use sink::{DryRunSink, NullSink, OutboxSink, Sink};
pub use source::{BatchSender, ChannelSource, EntitySource, IterSource, ValueSource};
pub use state_store::StateRunStore;
