//! Bulkhead's installer: the answer file and install configuration
//! ([`answers`]), the install's secrets ([`secrets`]), the install engine
//! over the partitioner ([`engine`]), the launch sequence both front ends
//! run ([`launch`]), and the text user interface as state, update and view
//! ([`app`], [`ui`]).

pub mod answers;
pub mod app;
pub mod engine;
pub mod launch;
pub mod secrets;
pub mod ui;
