from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.utils.translation import gettext_lazy as _

from accounts.models import ApiToken, NikChange, User
from accounts.services import abuse
from accounts.services import nik as nik_service


class UserCreateForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserEditForm(UserChangeForm):
    # Not a model field: recorded in NikChange when the NIK of an account holding tickets changes.
    nik_change_reason = forms.CharField(
        label=_("Alasan perubahan NIK"),
        required=False,
        max_length=255,
        help_text=_("Wajib bila NIK diubah saat akun memegang nomor antrean aktif; dicatat."),
    )

    class Meta:
        model = User
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        if "nik" in self.changed_data and self.instance.pk:
            reason = cleaned.get("nik_change_reason", "")
            if nik_service.held_tickets(self.instance).exists() and not reason.strip():
                self.add_error(
                    "nik_change_reason", _("Akun ini memegang nomor antrean aktif: tulis alasan perubahan NIK.")
                )
        return cleaned


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreateForm
    form = UserEditForm
    ordering = ["email"]
    list_display = ["email", "full_name", "nik", "phone", "is_staff", "is_rehearsal"]
    list_filter = ["is_staff", "is_active", "is_rehearsal"]
    search_fields = ["email", "full_name", "nik", "phone"]
    actions = ["disable_accounts"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        (_("Profil"), {"fields": ["full_name", "nik", "nik_change_reason", "phone"]}),
        (_("Hak akses"), {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        (_("Tanggal"), {"fields": ["last_login", "date_joined"]}),
    ]

    def save_model(self, request, obj, form, change):
        if change and "nik" in form.changed_data:
            new_nik = obj.nik
            obj.nik = User.objects.filter(pk=obj.pk).values_list("nik", flat=True).get()
            super().save_model(request, obj, form, change)  # the other fields, then the NIK through the service
            nik_service.staff_change(
                obj, new_nik, by=request.user, reason=form.cleaned_data.get("nik_change_reason", "")
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description=_("Nonaktifkan akun dan batalkan tiket aktifnya"), permissions=["change"])
    def disable_accounts(self, request, queryset):
        cancelled = sum(len(abuse.disable(user, by=request.user)) for user in queryset)
        self.message_user(
            request,
            _("%(users)d akun dinonaktifkan, %(tickets)d tiket dibatalkan.")
            % {"users": len(queryset), "tickets": cancelled},
        )

    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "full_name", "usable_password", "password1", "password2"]})
    ]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at"]
    search_fields = ["user__email", "prefix"]
    readonly_fields = ["prefix", "created_at"]
    fields = ["user", "name", "prefix", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(NikChange)
class NikChangeAdmin(admin.ModelAdmin):
    list_display = ["changed_at", "user", "old_nik", "new_nik", "changed_by", "reason"]
    search_fields = ["user__email", "old_nik", "new_nik"]
    list_select_related = ["user", "changed_by"]

    # A record of what happened: nobody edits it.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
