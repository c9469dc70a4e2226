//! Cluster tests: real `tessera` processes (3 meta, 6 data, 1 gateway) on 127.0.0.1, driven by
//! a real S3 client (aws-sdk-s3). One test binary keeps link times down; every test starts its
//! own cluster through the shared harness and tears it down.

mod bad_input;
mod encryption;
mod exactly_once;
mod gc_safety;
mod harness;
mod integrity;
mod kms;
mod observability;
mod repair;
mod restart;
mod s3_errors;
mod s3_listing;
mod s3_multipart;
mod s3_objects;
mod slow_clients;
mod sse_c;
mod transport;
