//! The server's cluster view: what policies read, kept current by watching the API server.

pub mod live;

pub use live::LiveCluster;
