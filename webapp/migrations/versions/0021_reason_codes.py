"""why a batch or a month failed, stopped or waits, as a code and its parameters beside the message

The screens used to read the stored Chinese sentence back through patterns; they now read
error_code (a webapp.statuses.Reason) and error_params (docs/rules.md, 失败与等待原因). The rows
already stored have nothing but their sentence, so here, and only here, the sentences older
versions wrote are classified by pattern (frozen: a migration never follows later code).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 23:30:00

"""
import re

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

_CHANNEL = r'^(?P<channel>乐企|RPA|税局接口)：'
# (pattern on a failed or stopped row's message, its code), the first match wins; named groups are parameters
_FAILED = tuple((re.compile(pattern), code) for pattern, code in (
    (r'^已被用户终止', 'terminated'),
    (_CHANNEL + r'.*次仍未处理完成', 'channel_pending'),
    (_CHANNEL + r'服务暂时不可用', 'channel_unavailable'),
    (_CHANNEL + r'请求超时', 'channel_timeout'),
    (_CHANNEL + r'无法连接服务', 'channel_unreachable'),
    (_CHANNEL + r'接口返回 HTTP', 'login_failed'),
    (_CHANNEL + r'通道地址配置错误', 'channel_address'),
    (_CHANNEL + r'(返回内容(不是有效的|不符合)|返回的数量无效|下载申请成功但未返回流水号|任务提交成功但未返回任务编号'
                r'|任务状态无法识别|请求第 \d+ [包页]|返回的发票列表格式错误|税局返回的发票|用途状态结果顺序错乱'
                r'|查询 \d+ 张发票的用途状态)', 'channel_bad_answer'),
    (_CHANNEL + r'任务执行失败', 'rpa_task_failed'),
    (_CHANNEL + r'请求被拒绝', 'channel_refused'),
    (_CHANNEL + r'.*次，服务仍不可用', 'channel_unavailable'),
    (_CHANNEL + r'返回的发票 \S+ 销方税号', 'rejected'),
    (_CHANNEL + r'(?P<message>.+)$', 'channel_refused'),
    (r'内部错误[ ：]?(?P<error>\w+)?', 'internal_error'),
    (r'^文件解析失败[^（]*(（(?P<error>\w+)）)?', 'file_unreadable'),
    (r'^解析结果无法写入服务器磁盘（(?P<why>[^）]*)）', 'disk_full'),
    (r'^文件解析所需内存超过服务器上限', 'parse_memory'),
    (r'^文件解析进程连续 (?P<times>\d+) 次意外中断', 'parse_crashed'),
    (r'^执行进程连续 (?P<times>\d+) 次意外中断（已自动重试 (?P<retries>\d+) 次）', 'process_died'),
    (r'^乐企下载流水号已过期', 'serial_expired'),
    (r'^该月份的解析数据已不存在', 'staged_missing'),
    (r'^乐企只能下载企业授权乐企能力（(?P<since>[0-9-]+)）之后开具的发票，(?P<first>[0-9-]+) 至 (?P<last>[0-9-]+) '
     r'共 (?P<count>\d+) 个月未申请', 'leqi_not_authorised'),
))
_QUOTA_WAIT = re.compile(r'^乐企额度：(?P<kinds>.*?)已达下载次数限制，将于 (?P<day>[0-9-]+) 自动执行')
_NUMBERS = ('attempts', 'times', 'retries', 'count')
_ATTEMPTS = re.compile(r'（已(?:尝试|查询) (\d+) 次')


def _params(found, code, message):
    """A match's named groups as the code's parameters (counts as numbers); a refusal in the
    bureau's own words keeps them, without the channel's prefix."""
    params = {name: int(value) if name in _NUMBERS else value
              for name, value in found.groupdict().items() if value is not None}
    attempts = _ATTEMPTS.search(message)
    if code.startswith('channel_') and attempts:
        params['attempts'] = int(attempts[1])
    if code == 'channel_refused':
        params.setdefault('message', '请联系管理员')
    if code == 'rejected':
        params = {'message': message}
    return params or None


def _waiting(message, usage, until):
    """A waiting month's reason: its usage batch waits for the month's invoices, a download for the
    乐企 quota (the old screens read 额度 in the message) or for the bureau to prepare the data."""
    if usage:
        return 'usage_wait', None
    quota = _QUOTA_WAIT.search(message)
    if quota:
        return 'quota_wait', quota.groupdict()
    if '额度' in message:
        return 'quota_wait', {'kinds': '', 'day': str(until)[:10]}
    channel = re.match(r'(乐企|RPA)', message)
    return 'data_preparing', {'channel': channel[0] if channel else '税局'}


def classify(message, status, usage=False, until=None, file=False):
    """(code, parameters) of a stored message: a waiting month's by what it waits for, any other by
    the first pattern that matches; what none matches is shown as it was (a file batch's: the file
    refused, file_refused; any other: rejected)."""
    if status == 'waiting':
        return _waiting(message, usage, until)
    for pattern, code in _FAILED:
        found = pattern.search(message)
        if found:
            return code, _params(found, code, message)
    return ('file_refused' if file else 'rejected'), {'message': message}


def _fill(table, context):
    """Every row of `table` with a message gets its code and parameters, in one executemany."""
    rows = sa.table(table, sa.column('id', sa.Integer()), sa.column('status', sa.String()),
                    sa.column('error', sa.Text()), sa.column('error_code', sa.String()),
                    sa.column('error_params', sa.JSON(none_as_null=True)))
    bind = op.get_bind()
    changes = []
    for row_id, status, message in bind.execute(sa.select(rows.c.id, rows.c.status, rows.c.error)
                                                .where(rows.c.error.is_not(None), rows.c.error != '')):
        code, params = classify(message, status, *context.get(row_id, (False, None, False)))
        changes.append({'row_id': row_id, 'code': code, 'params': params})
    if changes:
        bind.execute(rows.update().where(rows.c.id == sa.bindparam('row_id'))
                     .values(error_code=sa.bindparam('code'), error_params=sa.bindparam('params')), changes)


def _file_batches():
    """{id: (False, None, True)} of the file batches (a message of theirs no pattern knows refused the file)."""
    rows = op.get_bind().execute(sa.text("SELECT id FROM batch WHERE method = 'file'"))
    return {row_id: (False, None, True) for (row_id,) in rows}


def _waiting_subtasks():
    """{id: (whether its batch is a usage batch, until when it waits)} of the waiting subtasks."""
    rows = op.get_bind().execute(sa.text(
        "SELECT subtask.id, batch.data_type, subtask.not_before FROM subtask JOIN batch ON batch.id = subtask.batch_id "
        "WHERE subtask.status = 'waiting'"))
    return {row_id: (data_type == 'usage', until) for row_id, data_type, until in rows}


def upgrade():
    for table in ('batch', 'subtask'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('error_code', sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column('error_params', sa.JSON(none_as_null=True), nullable=True))
    _fill('batch', _file_batches())
    _fill('subtask', _waiting_subtasks())


def downgrade():
    for table in ('subtask', 'batch'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('error_params')
            batch_op.drop_column('error_code')
