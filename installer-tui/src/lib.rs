//! Bulkhead's installer: the answer file and install configuration
//! ([`config`]), the install engine over the partitioner ([`engine`]), the
//! launch sequence both front ends run ([`launch`]), and the text user
//! interface as state, update and view ([`app`], [`ui`]).

pub mod app;
pub mod config;
pub mod engine;
pub mod launch;
pub mod ui;
