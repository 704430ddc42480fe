//! Connections to outside systems shared by several adapters (the files
//! trigger and the `file.*` steps both speak SFTP).

pub(crate) mod sftp;
