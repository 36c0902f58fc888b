import pytest

from exo_dagster.sdk import templates


def test_parse_pieces_and_whole():
    t = templates.parse("Label: $${{ satellites.tickets.output.text }} for ${{cluster.identifier}}")
    texts = [p if isinstance(p, str) else (p.root, p.parts, p.per_row) for p in t.pieces]
    assert texts == [
        "Label: ",
        ("satellites", ("tickets", "output", "text"), True),
        " for ",
        ("cluster", ("identifier",), False),
    ]
    assert t.whole is None
    whole = templates.parse("${{ satellites.a.output }}").whole
    assert (whole.satellite, whole.column, whole.per_row) == ("a", None, False)


@pytest.mark.parametrize(
    "text,message",
    [
        ("${{ env.X", "unclosed"),
        ("${{ }}", "empty"),
        ("${{ satellites.a }}", "not a valid satellite reference"),
        ("${{ satellites.a.rows.x }}", "not a valid satellite reference"),
        ("$${{ satellites.a.output }}", "needs a column"),
        ("$${{ env.X }}", "only satellite columns"),
        ("${{ cluster.owner }}", "not a cluster field"),
        ("${{ os.system('x') }}", "not a valid reference"),
        ("${{ vars.X }}", "unknown template root"),
    ],
)
def test_syntax_errors(text, message):
    with pytest.raises(templates.TemplateSyntaxError, match=message):
        templates.parse(text)


def test_render_keeps_types_of_whole_templates_and_joins_text():
    values = {("env", ("N",)): "3", ("satellites", ("a", "output", "x")): [1, 2]}

    def resolve(ref):
        return values[(ref.root, ref.parts)]

    out = templates.render(
        {
            "n": "${{ env.N }}",
            "xs": "${{ satellites.a.output.x }}",
            "msg": "x=${{ satellites.a.output.x }}!",
            "plain": 5,
            "list": ["${{ env.N }}"],
        },
        resolve,
    )
    assert out == {"n": "3", "xs": [1, 2], "msg": "x=1, 2!", "plain": 5, "list": ["3"]}
