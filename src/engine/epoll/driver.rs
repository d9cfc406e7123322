//! The epoll loop of one core (placeholder until the epoll backend lands).

use std::sync::Arc;

use crate::engine::core::{CoreShared, Driver};
use crate::engine::RuntimeConfig;
use crate::error::StartError;

/// The epoll driver of one core.
pub(crate) struct Core;

impl Driver for Core {
    fn new(_shared: Arc<CoreShared>, _cfg: &RuntimeConfig) -> Result<Core, StartError> {
        Err(StartError::Config("the epoll backend is not built yet"))
    }

    fn run(self) {}
}
