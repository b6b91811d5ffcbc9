-- The accounts schema. Every statement is idempotent: `make up`, and the auth function at start-up, apply it as is.
CREATE TABLE IF NOT EXISTS accounts (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email         VARCHAR(254)    NOT NULL,
    password_hash VARCHAR(255)    NOT NULL,
    created_at    TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY accounts_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Failed logins in the current window, counted three ways (accounts/login_throttle.py): an account from one client
-- address (`email`, `address`), an account from every address (`email`, ''), one address over every account
-- ('', `address`). Addresses without an account are counted alike: their rows look like real ones.
CREATE TABLE IF NOT EXISTS failed_logins (
    email        VARCHAR(254) NOT NULL,
    address      VARCHAR(45)  NOT NULL,
    failures     INT UNSIGNED NOT NULL DEFAULT 0,
    window_start TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (email, address)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The client addresses each account logged in from, and when last: they are let through while the account is
-- being guessed at from many others.
CREATE TABLE IF NOT EXISTS login_addresses (
    email      VARCHAR(254) NOT NULL,
    address    VARCHAR(45)  NOT NULL,
    last_login TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (email, address)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Failed logins per address alone, as counted before failed_logins: nothing reads it any more.
DROP TABLE IF EXISTS login_failures;

-- When the owner of an address was last told that someone tried to sign up with it (at most once an hour).
CREATE TABLE IF NOT EXISTS signup_notices (
    email   VARCHAR(254) NOT NULL PRIMARY KEY,
    sent_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Sign-ups per client address in the current hour-long window (functions/auth/signup_limits.py).
CREATE TABLE IF NOT EXISTS signups_by_address (
    address      VARCHAR(45)  NOT NULL PRIMARY KEY,
    signups      INT UNSIGNED NOT NULL DEFAULT 0,
    window_start TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;
