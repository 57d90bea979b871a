"""The 导入 dialog's form: its fields (docs/rules.md, 导入 dialog), its rules as WTForms validators, and
what a valid dialog asks for (companies, months, files)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import RadioField, SelectField, StringField
from wtforms.validators import AnyOf, StopValidation, ValidationError

from channels.etax.container import MAX_UPLOAD_FILES
from channels.invoice_types import DOWNLOAD_KINDS
from channels.months import is_month, month_index, month_of, months_between
from channels.records import canonical_tax_id
from webapp.batches import check_channel_ready, check_months, leqi_refusal, months_before_leqi, period_years
from webapp.clock import now
from webapp.forms import MultiCheckbox, Needed, Rule, When, stripped
from webapp.models import Company
from webapp.statuses import Channel, DataType, Method


def _from_file(form: ImportForm) -> bool:
    return form.method.data == Method.FILE


def _downloading(form: ImportForm) -> bool:
    return form.method.data == Method.DOWNLOAD


def _by_year(form: ImportForm) -> bool:
    return form.period_unit.data == "year"


def _by_month(form: ImportForm) -> bool:
    return form.period_unit.data != "year"


def _kind_known(form: ImportForm, field) -> None:
    """Every other rule depends on what is imported and how."""
    if form.method.data not in Method or form.data_type.data not in DataType:
        raise StopValidation("请选择发票数据类型和导入方式")


def _one_company(form: ImportForm, field) -> None:
    if len(field.data or []) > 1:
        raise StopValidation("导入电子税局文件时只能选择一个企业")


def _canonical(tax_ids: list[str] | None) -> list[str] | None:
    """The ticked tax IDs in canonical form, however the request spells them."""
    return tax_ids and [canonical_tax_id(tax_id) for tax_id in tax_ids]


def _permitted(form: ImportForm, field) -> None:
    """Only the companies the user is granted (the choices offered) may be chosen."""
    if any(tax_id not in form.companies for tax_id in field.data or []):
        raise StopValidation("所选企业不在您的权限范围内")


def _years_chosen(form: ImportForm, field) -> None:
    """按年: years the dialog offers (the last five), the first not after the last."""
    offered = {value for value, _ in form.year.choices}
    first, last = form.year_range()
    if first not in offered or last not in offered:
        raise StopValidation("请选择近五年内的年度")
    if first > last:
        raise StopValidation("起始年度不能晚于截止年度")


def _months_given(form: ImportForm, field) -> None:
    start, end = form.month_from.data, form.month_to.data
    if not start or not end:
        raise StopValidation("请选择起止月份")
    if not (is_month(start) and is_month(end)):
        raise StopValidation("月份格式应为 YYYY-MM")


PERIOD_RULES = (  # 开票日期: a range of years, or a range of months, inside the last five years
    When(_by_year, _years_chosen),
    When(_by_month, _months_given,
         Rule(check_months, using=lambda form, field: (form.month_from.data, form.month_to.data, now().date()))),
)


def _kinds_chosen(form: ImportForm, field) -> None:
    if form.data_type.data == DataType.INVOICES and not field.data:
        raise StopValidation("请选择发票种类")
    if any(kind not in DOWNLOAD_KINDS for kind in field.data or []):
        raise StopValidation("发票种类不正确")


def _files_chosen(form: ImportForm, field) -> None:
    files = form.chosen_files()
    if not files:
        raise StopValidation("请选择从电子税局导出的文件")
    if len(files) > MAX_UPLOAD_FILES:
        raise StopValidation(f"一次最多导入 {MAX_UPLOAD_FILES} 个文件，请分次导入")


_channel_ready = When(_downloading, Rule(check_channel_ready, using=lambda form, field: (
    form.chosen_companies(), form.channel.data)))


def _leqi_covers(form: ImportForm, field) -> None:
    """Refuse before creating anything when, for a company, every chosen month precedes its 乐企
    authorisation (the batch could fetch nothing); a partial overlap is only warned about."""
    if not form.leqi_applies():
        return
    months = form.chosen_months()
    empty = [c for c in form.chosen_companies() if len(months_before_leqi(c, months)) == len(months)]
    if empty:
        raise StopValidation("；".join(map(leqi_refusal, empty)))


class ImportForm(FlaskForm):
    """The 导入 dialog's fields (docs/rules.md, 导入 dialog), each with its rules.

    Choices are checked by our validators (validate_choice=False), so a wrong value reads in Chinese.
    CSRF is checked for every POST by CSRFProtect, so the form does not check it again.
    """

    class Meta:
        csrf = False

    data_type = RadioField("发票数据类型", choices=DataType.choices(), default=DataType.INVOICES, validate_choice=False,
                           validators=[When(_from_file,
                                            AnyOf([DataType.INVOICES],
                                                  "导入电子税局文件仅支持发票数据，不支持发票用途状态"))])
    method = RadioField("导入方式", choices=[(m.value, m.label) for m in (Method.DOWNLOAD, Method.FILE)],
                        default=Method.FILE, validate_choice=False, validators=[_kind_known])
    channel = RadioField("下载通道", choices=[(c.value, c.label) for c in (Channel.RPA, Channel.LEQI)],
                         default=Channel.LEQI, validate_choice=False,
                         validators=[When(_downloading, AnyOf(Channel.codes(), "请选择下载通道"))])
    tax_ids = MultiCheckbox("企业名称", validate_choice=False, filters=[_canonical],
                            validators=[When(_from_file, _one_company), _permitted, Needed("请选择企业")])
    period_unit = RadioField("开票日期", choices=[("year", "按年"), ("month", "按月")], default="year",
                             validate_choice=False, validators=[When(_downloading, *PERIOD_RULES)])
    year = SelectField("起始年度", validate_choice=False)
    year_to = SelectField("截止年度", validate_choice=False)
    month_from = StringField("起始月份", filters=[stripped])
    month_to = StringField("截止月份", filters=[stripped])
    kinds = MultiCheckbox("发票种类", choices=list(DOWNLOAD_KINDS.items()), validate_choice=False,
                          validators=[When(_downloading, _kinds_chosen)])
    file = MultipleFileField("文件", validators=[When(_from_file, _files_chosen)])

    def offer(self, companies: list[Company], today) -> None:
        """The choices for this user: their companies, and the last five years."""
        self.companies = {c.tax_id: c for c in companies}
        self.tax_ids.choices = [(c.tax_id, f"{c.name}（{c.tax_id}）") for c in companies]
        self.year.choices = [(str(y), f"{y}年") for y in period_years(today)]
        self.year_to.choices = [("", "同起始年度")] + self.year.choices

    def validate(self, extra_validators=None) -> bool:
        """In three steps, each only when the one before holds: what is imported and how (every other
        rule depends on it); every field; then the chosen companies against the chosen channel and
        months (the dialog's notes said so before submitting)."""
        return (self.method.validate(self) and super().validate(extra_validators)
                and self.period_unit.validate(self, [_leqi_covers]) and self.tax_ids.validate(self, [_channel_ready]))

    def period_holds(self) -> bool:
        """Whether 开票日期 is valid, without recording why not (the notes shown before submitting)."""
        try:
            for rule in PERIOD_RULES:
                rule(self, self.period_unit)
        except (StopValidation, ValidationError):
            return False
        return True

    def year_range(self) -> tuple[str, str]:
        """按年: 起始年度 to 截止年度 (one year when the end is not chosen)."""
        first = self.year.data or ""
        return first, (self.year_to.data or first)

    def chosen_months(self) -> list[str]:
        """开票日期 as months: whole years (up to the current month), or the chosen range."""
        if self.period_unit.data == "year":
            first, last = self.year_range()
            return months_between(f"{first}-01", min(f"{last}-12", month_of(now()), key=month_index))
        return months_between(self.month_from.data, self.month_to.data)

    def chosen_companies(self) -> list[Company]:
        """The ticked companies the user may work on, in the dialog's order."""
        return [self.companies[t] for t in self.tax_ids.data or [] if t in self.companies]

    def chosen_files(self) -> list:
        """The files chosen, in the order chosen (a browser sends them in that order)."""
        return [storage for storage in self.file.data or [] if storage and storage.filename]

    def leqi_applies(self) -> bool:
        return (self.method.data == Method.DOWNLOAD and self.channel.data == Channel.LEQI
                and self.data_type.data == DataType.INVOICES)
