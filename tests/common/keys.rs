//! The test-only key pairs of tests/fixtures/keys/ (made with openssl): `(private, public)`
//! PEM texts.

/// RSA 2048.
pub const RSA: (&str, &str) = (
    include_str!("../fixtures/keys/rsa.pem"),
    include_str!("../fixtures/keys/rsa.pub.pem"),
);
/// EC P-256.
pub const P256: (&str, &str) = (
    include_str!("../fixtures/keys/p256.pem"),
    include_str!("../fixtures/keys/p256.pub.pem"),
);
/// EC P-384.
pub const P384: (&str, &str) = (
    include_str!("../fixtures/keys/p384.pem"),
    include_str!("../fixtures/keys/p384.pub.pem"),
);
/// EC P-521.
pub const P521: (&str, &str) = (
    include_str!("../fixtures/keys/p521.pem"),
    include_str!("../fixtures/keys/p521.pub.pem"),
);
/// Ed25519.
pub const ED25519: (&str, &str) = (
    include_str!("../fixtures/keys/ed25519.pem"),
    include_str!("../fixtures/keys/ed25519.pub.pem"),
);
