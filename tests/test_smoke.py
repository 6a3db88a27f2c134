from tests.conftest import Helpdesk, mail


def test_a_new_mail_makes_a_ticket(helpdesk: Helpdesk) -> None:
    result = helpdesk.ingest(mail())
    assert result.code == 0, result.err
    number = result.out.strip()
    assert helpdesk.ticket(number)["status"] == "new"
