from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiToken, User
from accounts.services import identity


@receiver([post_save, post_delete], sender=User)
def user_changed(sender, instance, **kwargs):
    # The war endpoint trusts the Redis copy of these facts; stale copies would let a deactivated
    # account keep buying, so every change drops them.
    identity.forget_user(instance)


@receiver(post_delete, sender=ApiToken)
def token_deleted(sender, instance, **kwargs):
    identity.forget_token(instance.key_hash)
