"""Site-file section `notify`: the routes alarm notifications take (webhooks, e-mail, SMS), each a log consumer."""

from __future__ import annotations

from pydantic import Field

from gateway.alarms.mail import EmailConfig
from gateway.alarms.sms import SmsConfig
from gateway.alarms.webhooks import WebhookConfig
from gateway.core.strict import Strict


class NotifyConfig(Strict):
    """Site-file section `notify`."""

    webhooks: list[WebhookConfig] = Field(default_factory=list)
    email: list[EmailConfig] = Field(default_factory=list, description="E-mail routes through SMTP servers.")
    sms: list[SmsConfig] = Field(default_factory=list, description="SMS routes through HTTP SMS gateways.")
