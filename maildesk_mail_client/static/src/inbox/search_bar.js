import { Component, onWillUpdateProps, useState } from "@odoo/owl";

/**
 * The search box. Free words match subject, sender, recipients and snippet; operators:
 * from: to: subject:"two words" has:attachment is:unread is:flagged before:2024-05-01
 * after:2024-01-31 (parsed on the server, application/search_query.py). "In" widens the
 * search from the folder chosen in the tree to its account, or to every mailbox.
 */
export class SearchBar extends Component {
    static props = {
        query: { type: String },
        searchIn: { type: String },
        canSearchAccount: { type: Boolean },
        onSearch: { type: Function },
    };
    static template = "maildesk_mail_client.SearchBar";

    setup() {
        this.state = useState({ text: this.props.query });
        onWillUpdateProps((next) => {
            if (next.query !== this.props.query) {
                this.state.text = next.query;
            }
        });
    }

    submit(ev) {
        ev.preventDefault();
        this.props.onSearch(this.state.text, this.props.searchIn);
    }

    clear() {
        this.state.text = "";
        this.props.onSearch("", this.props.searchIn);
    }

    onSearchInChange(ev) {
        this.props.onSearch(this.state.text, ev.target.value);
    }
}
