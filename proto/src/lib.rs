//! Protobuf schemas and the code generated from them at build time.
//!
//! Only the transport edges (`server`, `sdk-rust`) use these types; the
//! engine never sees them. The flagd schemas are written from flagd's
//! published interface (same packages, services, rpcs and field numbers),
//! so flagd's own providers talk to Rampart unchanged.

#![allow(missing_docs, unreachable_pub, clippy::all, missing_debug_implementations)]

pub mod backoff;
pub mod codec;
pub mod latency;

pub mod flagd {
    pub mod evaluation {
        pub mod v1 {
            tonic::include_proto!("flagd.evaluation.v1");
        }
        pub mod v2 {
            tonic::include_proto!("flagd.evaluation.v2");
        }
    }
    pub mod sync {
        pub mod v1 {
            tonic::include_proto!("flagd.sync.v1");
        }
    }
}

pub mod rampart {
    pub mod v1 {
        tonic::include_proto!("rampart.v1");
    }
}

pub use prost_types;
