"""`backup …` commands: create an archive, verify one, restore one (README.md, Backup and restore)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp import backup
from webapp.cli import fail, print_json

backup_group = AppGroup("backup", help="备份与恢复")


@backup_group.command("create")
@click.option("--to", "to", type=click.Path(dir_okay=False), help="archive path (default: DATA_DIR/backups/)")
def backup_create(to):
    """Write one consistent backup archive of every table while the product keeps running."""
    try:
        result = backup.create_backup(to)
    except backup.BackupRefused as refused:
        fail(str(refused))
    print_json({"path": result["path"], "size": result["size"], "schema_revision": result["schema_revision"],
                "created_at": result["created_at"],
                "rows": {name: table["rows"] for name, table in result["tables"].items()}})


@backup_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
def backup_verify(file):
    """Check an archive (manifest, every table's count and checksum) without touching the database."""
    try:
        manifest = backup.verify_backup(file)
    except backup.BackupRefused as refused:
        fail(str(refused))
    print_json({"path": file, "ok": True, "schema_revision": manifest["schema_revision"],
                "created_at": manifest["created_at"],
                "rows": {name: table["rows"] for name, table in manifest["tables"].items()}})


@backup_group.command("checksums")
def backup_checksums():
    """Each table's row count and checksum in this database, computed as a backup computes them
    (compare with a manifest, or between the database backed up and the one restored)."""
    print_json(backup.table_digests())


@backup_group.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--replace", is_flag=True, help="overwrite a database that already holds data")
def backup_restore(file, replace):
    """Restore an archive into the database DATABASE_URL names (empty, or any with --replace)."""
    try:
        print_json(backup.restore_backup(file, replace=replace))
    except backup.BackupRefused as refused:
        fail(str(refused))


backup_restore.callback.explains_unmigrated = True  # a fresh, unmigrated database is what it restores into
backup_create.callback.explains_unmigrated = True  # says so itself, in the words of a backup
COMMANDS = (backup_group,)
