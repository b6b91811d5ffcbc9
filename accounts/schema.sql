-- The accounts schema. Every statement is idempotent: `make up`, and the auth function at start-up, apply it as is.
CREATE TABLE IF NOT EXISTS accounts (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email         VARCHAR(254)    NOT NULL,
    password_hash VARCHAR(255)    NOT NULL,
    created_at    TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY accounts_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Failed logins per email address (known or not), for throttling: the row of an unknown address looks like a real one.
CREATE TABLE IF NOT EXISTS login_failures (
    email        VARCHAR(254) NOT NULL PRIMARY KEY,
    failures     INT UNSIGNED NOT NULL DEFAULT 0,
    window_start TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Sign-ups per client address in the current hour-long window (functions/auth/signup_limits.py).
CREATE TABLE IF NOT EXISTS signups_by_address (
    address      VARCHAR(45)  NOT NULL PRIMARY KEY,
    signups      INT UNSIGNED NOT NULL DEFAULT 0,
    window_start TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;
