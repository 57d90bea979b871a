"""lists kept as JSON: batch.kinds, batch.type_codes and schedule_run.batch_nos instead of joined text

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 08:30:00

"""
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# (table, column, the separator the text used, whether the text could be NULL)
LISTS = (('batch', 'kinds', '、', False), ('batch', 'type_codes', ',', True), ('schedule_run', 'batch_nos', ',', False))


def _rewrite(table, column, convert):
    """Every row's value of a text column through `convert`, in one executemany."""
    rows = sa.table(table, sa.column('id', sa.Integer()), sa.column(column, sa.Text()))
    bind = op.get_bind()
    changes = [{'row_id': row_id, 'value': convert(value)}
               for row_id, value in bind.execute(sa.select(rows.c.id, rows.c[column]))]
    if changes:
        bind.execute(rows.update().where(rows.c.id == sa.bindparam('row_id')).values({column: sa.bindparam('value')}),
                     changes)


def _alter(table, *columns):
    """Change the type of columns of one table, each given as (name, old type, new type, nullable);
    PostgreSQL casts the values (text holding JSON to json, json to its text)."""
    dialect = op.get_bind().dialect
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column, old, new, nullable in columns:
            batch_op.alter_column(column, existing_type=old, type_=new, nullable=nullable,
                                  postgresql_using=f'{column}::{new.compile(dialect=dialect)}')


def _as_json(separator):
    """Joined text to a JSON list ('' and NULL: the empty list)."""
    return lambda value: json.dumps([part for part in (value or '').split(separator) if part], ensure_ascii=False)


def _as_text(separator, nullable):
    """A JSON list back to joined text; an empty one as the text kept before (NULL type codes: every kind)."""
    return lambda value: separator.join(json.loads(value or '[]') or []) or (None if nullable else '')


def upgrade():
    for table, column, separator, _nullable in LISTS:
        _rewrite(table, column, _as_json(separator))
    _alter('batch', ('kinds', sa.Text(), sa.JSON(), False), ('type_codes', sa.String(length=64), sa.JSON(), False))
    _alter('schedule_run', ('batch_nos', sa.Text(), sa.JSON(), False))


def downgrade():
    # to unbounded text first: on PostgreSQL a JSON list may be longer than the joined String(64)
    _alter('batch', ('kinds', sa.JSON(), sa.Text(), False), ('type_codes', sa.JSON(), sa.Text(), True))
    _alter('schedule_run', ('batch_nos', sa.JSON(), sa.Text(), False))
    for table, column, separator, nullable in LISTS:
        _rewrite(table, column, _as_text(separator, nullable))
    _alter('batch', ('type_codes', sa.Text(), sa.String(length=64), True))
