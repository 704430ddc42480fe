//! Connections to outside systems shared by several adapters (the files
//! trigger and the `file.*` steps both speak SFTP and S3).

pub(crate) mod aws;
pub(crate) mod s3;
pub(crate) mod sftp;
