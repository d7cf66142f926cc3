//! Remote task logs (`[logging] remote_base_log_folder`): a try's log is uploaded to object
//! storage in chunks while it runs and whole when it ends, retried with backoff and never
//! failing the try; reading takes the live local file while the try runs and the object store
//! after, so callers cannot tell the difference.
